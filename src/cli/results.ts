import { writeFileSync } from "node:fs";
import { openLedgerReadOnly } from "../ledger/openLedger.js";
import { loadSummary, parseByList, parseMetricChoices, SummaryOptionError } from "../results/summary.js";
import { formatSummary, SUMMARY_FORMATS, type SummaryFormat } from "../results/summaryFormat.js";
import { didYouMean } from "../sweep/closest.js";
import { EXIT, UsageError } from "./exitCodes.js";
import { stateDirFrom } from "./stateDir.js";

export interface ResultsFlags {
  state?: string;
  /** The ledger's store (Default: $LABSWEEP_STORE, else the state dir's SQLite file). */
  store?: string;
  /** Parameters to group by, comma-separated, repeatable. (Default: every parameter but `seed`) */
  by?: string[];
  /** Metrics to show, comma-separated, each optionally `:min`/`:max`, repeatable. (Default: all numeric ones) */
  metric?: string[];
  /** Only this phase. (Default: every phase) */
  phase?: string;
  /** (Default: table) */
  format: string;
  /** Write here instead of stdout. (Default: stdout) */
  output?: string;
}

/**
 * `labsweep results`: the summary table — mean ± std and a 95% interval over seeds per
 * configuration — read from the ledger only, so it works while a run is going and after.
 */
export async function resultsCommand(configs: string[], flags: ResultsFlags): Promise<number> {
  const format = flags.format as SummaryFormat;
  if (!SUMMARY_FORMATS.includes(format))
    throw new UsageError(
      `--format must be one of ${SUMMARY_FORMATS.join(", ")}, got "${flags.format}"${didYouMean(flags.format, SUMMARY_FORMATS)}`,
    );
  const by = flags.by === undefined ? undefined : parseByList(flags.by);
  if (by !== undefined && by.length === 0) throw new UsageError("--by needs at least one parameter name");
  const metrics = flags.metric === undefined ? undefined : parseMetricChoices(flags.metric);
  const stateDir = stateDirFrom(flags, configs);
  const db = openLedgerReadOnly(stateDir, { store: flags.store });
  if (!db)
    throw new UsageError(
      `no ledger in ${stateDir}: start one with \`labsweep run CONFIG…\` (or pass --state DIR)`,
    );
  try {
    const summary = await loadSummary(db, { by, metrics, phase: flags.phase }).catch((error: unknown) => {
      if (error instanceof SummaryOptionError) throw new UsageError(error.message);
      throw error;
    });
    const text = formatSummary(summary, format);
    if (flags.output) writeFileSync(flags.output, text);
    else process.stdout.write(text);
    return EXIT.ok;
  } finally {
    await db.close();
  }
}
