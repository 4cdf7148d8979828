import { openSweep } from "../coordinator/openSweep.js";
import { openLedgerReadOnly } from "../ledger/openLedger.js";
import { type DirReport, type VerifyProblem, verifyOutputDirs } from "../results/verify.js";
import { outputDirsOf } from "../sweep/expand.js";
import { EXIT, UsageError } from "./exitCodes.js";
import { stateDirFrom } from "./stateDir.js";

export interface VerifyFlags {
  state?: string;
  /** The ledger's store (Default: $LABSWEEP_STORE, else the state dir's SQLite file). */
  store?: string;
  command?: string;
  yes?: boolean;
  json?: boolean;
}

/** PostgreSQL's error code for a table that does not exist. */
const UNDEFINED_TABLE = "42P01";

/**
 * `labsweep verify CONFIG…`: checks every output dir of the configs against the ledger
 * (results/verify.ts). Exit 0 when all is well, 1 when anything is wrong, 2 for bad input. It
 * writes nothing.
 */
export async function verifyCommand(configs: string[], flags: VerifyFlags): Promise<number> {
  const sweep = openSweep(configs, { defaultCommand: flags.command, yes: flags.yes });
  const outputDirs = [...new Set(sweep.phases.flatMap((phase) => outputDirsOf(phase)))].sort();
  const stateDir = stateDirFrom(flags, configs);
  const reader = openLedgerReadOnly(stateDir, { store: flags.store });
  if (!reader)
    throw new UsageError(
      `no ledger in ${stateDir}: nothing to verify against (run the configs first, or pass --state DIR)`,
    );
  try {
    return finish(await ledgerCall(() => verifyOutputDirs(reader, outputDirs)), flags);
  } finally {
    await reader.close();
  }
}

/** A PostgreSQL database nobody has run yet has no tables: bad input, said plainly. */
async function ledgerCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if ((error as { code?: string }).code === UNDEFINED_TABLE)
      throw new UsageError("no ledger in this database yet: nothing to verify against", { cause: error });
    throw error;
  }
}

/** Prints the verdict; returns the exit code. */
function finish(reports: DirReport[], flags: VerifyFlags): number {
  const problems = reports.flatMap((report) => report.problems);
  const dirs = [...new Set(reports.map((report) => report.outputDir))];
  const rows = reports.reduce((sum, report) => sum + report.rows, 0);
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ ok: problems.length === 0, dirs: reports, problems })}\n`);
    return problems.length === 0 ? EXIT.ok : EXIT.failed;
  }
  for (const problem of problems) process.stdout.write(`${problemLine(problem)}\n`);
  if (problems.length === 0) {
    process.stdout.write(`verify: ${dirs.length} output dirs, ${rows} rows: every result in place\n`);
    return EXIT.ok;
  }
  const kinds = new Map<string, number>();
  for (const problem of problems) kinds.set(problem.kind, (kinds.get(problem.kind) ?? 0) + 1);
  const dirsWrong = new Set(problems.map((problem) => problem.file)).size;
  const byKind = [...kinds].map(([kind, count]) => `${count} ${kind}`).join(", ");
  process.stdout.write(
    `verify: ${problems.length} problems (${byKind}) in ${dirsWrong} of ${dirs.length} output dirs\n`,
  );
  return EXIT.failed;
}

/** `FILE:LINE: duplicate: task 3 {"x":1}: why`. */
export function problemLine(problem: VerifyProblem): string {
  const place = problem.line === null ? problem.file : `${problem.file}:${problem.line}`;
  const task = problem.task ? ` task ${problem.task.id} ${JSON.stringify(problem.task.params)}:` : "";
  return `${place}: ${problem.kind}:${task} ${problem.detail}`;
}
