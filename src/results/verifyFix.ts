import { randomBytes } from "node:crypto";
import { rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { stringify } from "csv-stringify/sync";
import { tightenFile } from "../files/privateFiles.js";
import type { Db } from "../ledger/db.js";
import { LEDGER_LOCKS, tryLockLedger } from "../ledger/dialect.js";
import { oweRowsAgain } from "../ledger/oweRowsAgain.js";
import { oweRowsToNewPlacements } from "../ledger/resultRows.js";
import { CsvFileError, errorText } from "./csvFile.js";
import type { CsvRecords } from "./csvRecords.js";
import { syncDirectory, writeAndSync } from "./durableWrite.js";
import { FAILED_FILE } from "./failedLog.js";
import { type DrainOutcome, drainOwedResults } from "./resultsWriter.js";
import { RESULTS_FILE, rescanOutputDir } from "./resumeScan.js";
import { inspectResultsFile, type VerifyProblem } from "./verify.js";
import { moveUnknownArtifacts, unknownArtifactFiles } from "./verifyArtifacts.js";
import { inspectFailedLog } from "./verifyFailedLog.js";

/** What `verify --fix` did to one dir. */
export interface DirFix {
  outputDir: string;
  /** Rows moved out of final_results.csv, and the side file now holding them. */
  moved: number;
  sideFile: string | null;
  /** Rows owed again (missing from the file), written by the results writer. */
  owed: number;
  /** Why the dir was left as it is (a file that cannot be read or written). */
  error: string | null;
}

export interface FixReport {
  dirs: DirFix[];
  /** Artifact files no row names, moved aside, and the `.foreign-<time>` dirs now holding them. */
  artifacts: { moved: number; into: string[] };
  /** The results writer's drain of the owed rows. */
  drain: DrainOutcome;
}

/**
 * Repairs each dir's final_results.csv against the ledger, deleting nothing: first the resume
 * scan a run starts with (rows of tasks the ledger has not seen succeed become their results);
 * then every foreign row (duplicate, torn, unknown) goes to a side file beside the CSV, with its
 * original line, and out of the CSV by one atomic rewrite; then the rows missing are owed again
 * and the results writer writes them as a run would. With `stateDir`, its failed_experiments.csv
 * too: lines of unknown tasks and a torn one go to a side file. Artifact files no row names are
 * moved aside (moveUnknownArtifacts). The caller holds the state dir's lock: a
 * run or serve writing the same files at the same time would race with the rewrite.
 */
export async function fixOutputDirs(
  db: Db,
  outputDirs: readonly string[],
  options: { now?: Date; stateDir?: string } = {},
): Promise<FixReport> {
  if (db.dialect === "sqlite") return fixAll(db, outputDirs, options);
  // On PostgreSQL, coordinators with state dirs of their own (whose locks this process cannot
  // see) may drain rows into these files: hold the results writers' lock for the whole repair.
  return db.transaction(async (tx) => {
    if (!(await tryLockLedger(tx, LEDGER_LOCKS.results)))
      throw new ResultsBusyError(
        "another coordinator is writing this ledger's result files right now; stop it, or try again",
      );
    return fixAll(tx, outputDirs, options);
  });
}

/** Another coordinator holds the results writers' lock: a repair now would race its appends. */
export class ResultsBusyError extends Error {
  override name = "ResultsBusyError";
}

async function fixAll(
  db: Db,
  outputDirs: readonly string[],
  options: { now?: Date; stateDir?: string },
): Promise<FixReport> {
  const now = options.now ?? new Date();
  await oweRowsToNewPlacements(db);
  const dirs: DirFix[] = [];
  for (const outputDir of outputDirs) dirs.push(await fixDir(db, outputDir, now));
  if (options.stateDir !== undefined) dirs.push(await fixFailedLog(db, options.stateDir, now));
  const unknown = await unknownArtifactFiles(db, outputDirs);
  const artifacts = { moved: unknown.length, into: await moveUnknownArtifacts(unknown, now) };
  return { dirs, artifacts, drain: await drainOwedResults(db) };
}

/** The failed log's torn line and lines of tasks the ledger does not know go to a side file. */
async function fixFailedLog(db: Db, stateDir: string, now: Date): Promise<DirFix> {
  const fix: DirFix = { outputDir: stateDir, moved: 0, sideFile: null, owed: 0, error: null };
  try {
    const { csv, foreign, report } = await inspectFailedLog(db, stateDir);
    const unreadable = report.problems.find((problem) => problem.kind === "unreadable");
    if (unreadable) return { ...fix, error: unreadable.detail };
    if (!csv || foreign.size === 0) return fix;
    fix.sideFile = await moveAside(join(stateDir, FAILED_FILE), csv, foreign, now);
    // In the state dir: the owner's alone, like the log itself (log tails can hold secrets).
    tightenFile(fix.sideFile);
    tightenFile(join(stateDir, FAILED_FILE));
    fix.moved = foreign.size;
  } catch (error) {
    if (!(error instanceof CsvFileError)) throw error;
    fix.error = errorText(error);
  }
  return fix;
}

async function fixDir(db: Db, outputDir: string, now: Date): Promise<DirFix> {
  const fix: DirFix = { outputDir, moved: 0, sideFile: null, owed: 0, error: null };
  try {
    await rescanOutputDir(db, outputDir, now.getTime());
    const inspection = await inspectResultsFile(db, outputDir);
    const unreadable = inspection.report.problems.find((problem) => problem.kind === "unreadable");
    if (unreadable) return { ...fix, error: unreadable.detail };
    if (inspection.csv && inspection.foreign.size > 0) {
      const path = join(outputDir, RESULTS_FILE);
      fix.sideFile = await moveAside(path, inspection.csv, inspection.foreign, now);
      fix.moved = inspection.foreign.size;
    }
    await oweRowsAgain(db, outputDir, inspection.missing);
    fix.owed = inspection.missing.length;
  } catch (error) {
    if (!(error instanceof CsvFileError)) throw error;
    fix.error = errorText(error);
  }
  return fix;
}

/**
 * Writes the foreign rows to `<file>.foreign-<time>.csv` (their original line and why, then
 * the file's own columns) and fsyncs it, then replaces the CSV with itself less those rows.
 * In that order: a crash between leaves a row in both, never in neither.
 */
async function moveAside(
  path: string,
  csv: CsvRecords,
  foreign: ReadonlyMap<number, VerifyProblem>,
  now: Date,
): Promise<string> {
  const sideRows = [...foreign.values()]
    .sort((a, b) => (a.line as number) - (b.line as number))
    .map((problem) => {
      const line = problem.line as number;
      const record = csv.rows.find((row) => row.line === line);
      const cells = record ? record.cells : [csv.torn?.text ?? ""];
      return [String(line), problem.kind, ...cells];
    });
  const stamp = now.toISOString().replace(/[:.]/g, "-");
  const sideFile = `${path}.foreign-${stamp}.csv`;
  const text = stringify([["source_line", "reason", ...csv.header], ...sideRows], { record_delimiter: "\n" });
  try {
    await writeAndSync(sideFile, "wx", Buffer.from(text));
    await syncDirectory(dirname(path));
  } catch (error) {
    throw new CsvFileError(`cannot write ${sideFile}`, { cause: error });
  }
  const kept: Buffer[] = [];
  let at = 0;
  const removed = csv.rows
    .filter((row) => foreign.has(row.line))
    .map((row) => [row.start, row.end] as const)
    .concat(csv.torn ? [[csv.torn.start, csv.bytes.length] as const] : []);
  for (const [start, end] of removed) {
    kept.push(csv.bytes.subarray(at, start));
    at = end;
  }
  kept.push(csv.bytes.subarray(at));
  await replaceFile(path, Buffer.concat(kept));
  return sideFile;
}

/** Temp file, fsync, rename over `path`, fsync the dir: readers see the old file or the new. */
async function replaceFile(path: string, bytes: Buffer): Promise<void> {
  const directory = dirname(path);
  const temp = join(directory, `.${basename(path)}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`);
  let renamed = false;
  try {
    await writeAndSync(temp, "wx", bytes);
    await rename(temp, path);
    renamed = true;
    await syncDirectory(directory);
  } catch (error) {
    throw new CsvFileError(`cannot rewrite ${path}`, { cause: error });
  } finally {
    if (!renamed) await rm(temp, { force: true });
  }
}
