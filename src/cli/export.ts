import { once } from "node:events";
import { appendFileSync, writeFileSync } from "node:fs";
import { stringify } from "csv-stringify/sync";
import { METRIC_POINTS_SCHEMA, OldLedgerError, requireSchema } from "../ledger/migrate.js";
import { openLedgerReadOnly } from "../ledger/openLedger.js";
import { type ExportedResult, exportedResults, resultsTable } from "../results/exportResults.js";
import { writeSeries } from "../results/exportSeries.js";
import { EXIT, UsageError } from "./exitCodes.js";
import { stateDirFrom } from "./stateDir.js";

export interface ExportFlags {
  state?: string;
  format: string;
  output?: string;
  /** Write the live metrics' series instead of the results (`--metrics`). (Default: false) */
  metrics?: boolean;
}

export async function exportCommand(configs: string[], flags: ExportFlags): Promise<number> {
  if (flags.format !== "csv" && flags.format !== "jsonl") {
    throw new UsageError(`--format must be csv or jsonl, got "${flags.format}"`);
  }
  const stateDir = stateDirFrom(flags, configs);
  const db = openLedgerReadOnly(stateDir);
  if (!db) throw new UsageError(`no ledger in ${stateDir}: nothing to export (pass --state DIR?)`);
  try {
    if (flags.metrics) {
      try {
        await requireSchema(db, METRIC_POINTS_SCHEMA, "export --metrics");
      } catch (error) {
        if (error instanceof OldLedgerError) throw new UsageError(error.message);
        throw error;
      }
      await writeSeries(db, flags.format, pageWriter(flags.output));
      return EXIT.ok;
    }
    const results: ExportedResult[] = [];
    for await (const result of exportedResults(db)) results.push(result);
    let text: string;
    if (flags.format === "jsonl") text = results.map((result) => `${JSON.stringify(result)}\n`).join("");
    else {
      const table = resultsTable(results);
      text = stringify([table.header, ...table.rows]);
    }
    if (flags.output) writeFileSync(flags.output, text);
    else process.stdout.write(text);
    return EXIT.ok;
  } finally {
    await db.close();
  }
}

/** Writes page after page to `output` (created afresh) or to stdout, waiting while stdout is full. */
function pageWriter(output: string | undefined): (text: string) => Promise<void> {
  if (output !== undefined) writeFileSync(output, "");
  return async (text) => {
    if (output !== undefined) appendFileSync(output, text);
    else if (!process.stdout.write(text)) await once(process.stdout, "drain");
  };
}
