import { openSweep } from "../coordinator/openSweep.js";
import { acquireStateLock, StateLockedError } from "../coordinator/stateLock.js";
import type { Db } from "../ledger/db.js";
import { openLedger, openLedgerReadOnly } from "../ledger/openLedger.js";
import { type DirReport, type VerifyProblem, verifyOutputDirs } from "../results/verify.js";
import { unknownArtifactFiles, verifyArtifacts } from "../results/verifyArtifacts.js";
import { inspectFailedLog } from "../results/verifyFailedLog.js";
import { type FixReport, fixOutputDirs, ResultsBusyError } from "../results/verifyFix.js";
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
  /** Repair what is wrong (Default: only report). */
  fix?: boolean;
}

/** PostgreSQL's error code for a table that does not exist. */
const UNDEFINED_TABLE = "42P01";

/**
 * `labsweep verify CONFIG… [--fix]`: checks every output dir of the configs against the ledger
 * (results/verify.ts). Exit 0 when all is well, 1 when anything is wrong, 2 for bad input. It
 * writes nothing without --fix; --fix needs the state dir to itself.
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
  if (!flags.fix) {
    try {
      return finish(await ledgerCall(() => checkAll(reader, outputDirs, stateDir)), null, flags);
    } finally {
      await reader.close();
    }
  }
  await reader.close();
  const release = lockForFix(stateDir);
  let db: Db | null = null;
  try {
    db = await openLedger(stateDir, { store: flags.store });
    const writable = db;
    const fix = await ledgerCall(() => fixOutputDirs(writable, outputDirs, { stateDir })).catch((error) => {
      if (error instanceof ResultsBusyError)
        throw new UsageError(`cannot --fix: ${error.message}`, { cause: error });
      throw error;
    });
    return finish(await checkAll(writable, outputDirs, stateDir), fix, flags);
  } finally {
    await db?.close();
    release();
  }
}

/** What verify found: each output dir's report, then ledger-wide ones (artifacts, the failed log). */
interface Verdict {
  dirs: DirReport[];
  ledgerWide: DirReport[];
}

/** Every output dir's checks, the stored artifacts' checksums, and failed_experiments.csv. */
async function checkAll(db: Db, outputDirs: readonly string[], stateDir: string): Promise<Verdict> {
  const dirs = await verifyOutputDirs(db, outputDirs);
  const artifacts = await verifyArtifacts(db);
  const unknown = (await unknownArtifactFiles(db, outputDirs)).map(
    (file): VerifyProblem => ({
      kind: "artifact-unknown",
      file: file.file,
      line: null,
      task: file.taskId === null ? null : { id: file.taskId },
      detail: "the ledger records no artifact of this name (another attempt's, left behind?)",
    }),
  );
  const artifactReport: DirReport = {
    outputDir: "artifacts",
    rows: 0,
    problems: artifacts
      .map(
        (problem): VerifyProblem => ({
          kind: `artifact-${problem.problem}`,
          file: problem.file,
          line: null,
          task: { id: problem.taskId },
          detail: problem.detail,
        }),
      )
      .concat(unknown),
  };
  return { dirs, ledgerWide: [artifactReport, (await inspectFailedLog(db, stateDir)).report] };
}

/** The state dir's lock, or exit 2: a run or serve writes these files and would race the fix. */
function lockForFix(stateDir: string): () => void {
  try {
    return acquireStateLock(stateDir);
  } catch (error) {
    if (!(error instanceof StateLockedError)) throw error;
    throw new UsageError(
      `cannot --fix while a labsweep run or serve is using this ledger (${error.message}): it writes the same result files, and the two would race; stop it, or run verify without --fix`,
      { cause: error },
    );
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

/** Prints the fix (if any) and the verdict; returns the exit code. */
function finish(verdict: Verdict, fix: FixReport | null, flags: VerifyFlags): number {
  const reports = [...verdict.dirs, ...verdict.ledgerWide];
  const problems = reports.flatMap((report) => report.problems);
  const dirs = new Set(verdict.dirs.map((report) => report.outputDir)).size;
  const rows = verdict.dirs.reduce((sum, report) => sum + report.rows, 0);
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ ok: problems.length === 0, dirs: reports, problems, fix })}\n`);
    return problems.length === 0 ? EXIT.ok : EXIT.failed;
  }
  if (fix) for (const line of fixLines(fix)) process.stdout.write(`${line}\n`);
  for (const problem of problems) process.stdout.write(`${problemLine(problem)}\n`);
  if (problems.length === 0) {
    process.stdout.write(
      `verify: ${plural(dirs, "output dir")}, ${plural(rows, "row")}: every result in place\n`,
    );
    return EXIT.ok;
  }
  const kinds = new Map<string, number>();
  for (const problem of problems) kinds.set(problem.kind, (kinds.get(problem.kind) ?? 0) + 1);
  const files = new Set(problems.map((problem) => problem.file)).size;
  const byKind = [...kinds].map(([kind, count]) => `${count} ${kind}`).join(", ");
  process.stdout.write(
    `verify: ${plural(problems.length, "problem")} (${byKind}) in ${plural(files, "file")}${fix ? "" : "; `labsweep verify --fix` repairs them"}\n`,
  );
  return EXIT.failed;
}

/** `FILE:LINE: duplicate: task 3 {"x":1}: why`. */
export function problemLine(problem: VerifyProblem): string {
  const place = problem.line === null ? problem.file : `${problem.file}:${problem.line}`;
  const params = problem.task?.params ? ` ${JSON.stringify(problem.task.params)}` : "";
  const task = problem.task ? ` task ${problem.task.id}${params}:` : "";
  return `${place}: ${problem.kind}:${task} ${visible(problem.detail)}`;
}

function fixLines(fix: FixReport): string[] {
  const lines: string[] = [];
  for (const dir of fix.dirs) {
    if (dir.error) lines.push(`fix: left ${dir.outputDir} as it is: ${dir.error}`);
    if (dir.moved > 0) lines.push(`fix: moved ${plural(dir.moved, "row")} into ${dir.sideFile}`);
    if (dir.owed > 0) lines.push(`fix: ${plural(dir.owed, "missing row")} owed to ${dir.outputDir} again`);
  }
  if (fix.artifacts.moved > 0)
    lines.push(
      `fix: moved ${plural(fix.artifacts.moved, "unknown artifact file")} into ${fix.artifacts.into.join(", ")}`,
    );
  lines.push(`fix: wrote ${plural(fix.drain.written, "result row")}`);
  for (const failed of fix.drain.failed)
    lines.push(`fix: cannot write results to ${failed.outputDir}: ${failed.error}`);
  return lines;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

/** Control characters escaped: a cell's newline or terminal escape stays inside its one line. */
function visible(text: string): string {
  return [...text]
    .map((char) => {
      const code = char.charCodeAt(0);
      return code < 0x20 || code === 0x7f ? `\\u${code.toString(16).padStart(4, "0")}` : char;
    })
    .join("");
}
