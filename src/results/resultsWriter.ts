import { stat } from "node:fs/promises";
import { join } from "node:path";
import type { Db } from "../ledger/db.js";
import { LEDGER_LOCKS, tryLockLedger } from "../ledger/dialect.js";
import { clearDirError, failingDirs, recordDirError } from "../ledger/resultDirErrors.js";
import { type FileIdentity, recordedFile, recordFile } from "../ledger/resultFiles.js";
import { markRowsWritten, type OwedRow, owedResultRows } from "../ledger/resultRows.js";
import { metadataValues, resultTable } from "./columns.js";
import { appendCsvRows, CsvFileError, errorText } from "./csvFile.js";
import { RESULTS_FILE, rescanOutputDir } from "./resumeScan.js";

/** What one drain did. */
export interface DrainOutcome {
  /** Rows appended to results files. */
  written: number;
  /**
   * Dirs whose file could not be written, and why. Their rows stay owed; the next drain tries
   * them again. `news`: the dir was fine, or failed for another reason, on the try before.
   */
  failed: Array<{ outputDir: string; error: string; news: boolean }>;
}

/**
 * Drains the ledger's outbox of result rows into `{output_dir}/final_results.csv`. A row is
 * appended and fsynced before it is marked written. Exactly once, across crashes and replicas:
 * - one writer per ledger at a time: on PostgreSQL the writer holds an advisory lock for each
 *   pass of a drain (its transaction: read owed rows, append, mark them written), and a replica
 *   that finds it held leaves the rows to the holder (returns null: try again shortly);
 * - the ledger records each file's size and modification time after every write; a file that
 *   differs was changed behind the writer's back — a writer that died between its append and its
 *   commit — so it is read for the rows it already holds (rescanOutputDir) before anything is
 *   appended.
 * A dir that cannot be written (unwritable, a malformed CSV) fails alone: its error is recorded
 * in the ledger (result_dir_errors, for `status` and the dashboard), the drain goes on with the
 * other dirs and leaves it out until the next drain, which tries it again.
 * Columns: `phase`, the parameters, the metrics, then run metadata (columns.ts).
 */
export async function writeOwedResults(db: Db): Promise<number> {
  return (await drainOwedResults(db)).written;
}

/** writeOwedResults, telling which dirs failed. */
export async function drainOwedResults(db: Db): Promise<DrainOutcome> {
  return (await writeOwedResultsOnce(db)) ?? { written: 0, failed: [] };
}

/** drainOwedResults, or null when another replica is writing right now (it will take these rows too). */
export async function writeOwedResultsOnce(db: Db): Promise<DrainOutcome | null> {
  const outcome: DrainOutcome = { written: 0, failed: [] };
  // Dirs that failed in this drain: left out of its later passes, else a failing dir with more
  // owed rows than a pass reads would hide every dir after it, and the drain would never end.
  const skip = new Set<string>();
  // On SQLite the ledger has one coordinator: no lock, and no transaction held across file I/O.
  if (db.dialect === "sqlite") {
    while ((await drainPass(db, skip, outcome)) > 0);
    return outcome;
  }
  // One transaction per pass, not one for the whole drain: under load rows keep arriving and a
  // drain may not end for the whole run, and while a transaction that wrote is open PostgreSQL
  // can clean up no row version that died after it began (claimers then wade through them all).
  for (;;) {
    const owed = await db.transaction(async (tx) =>
      (await tryLockLedger(tx, LEDGER_LOCKS.results)) ? drainPass(tx, skip, outcome) : null,
    );
    // Another replica took the duty between passes: it drains what is left.
    if (owed === null) return outcome.written > 0 || outcome.failed.length > 0 ? outcome : null;
    if (owed === 0) return outcome;
  }
}

/**
 * Writes the rows owed now (up to owedResultRows' limit) to every dir not in `skip`; a dir that
 * fails joins `skip` and `outcome.failed`. Returns how many rows were owed (0: the drain is over).
 */
async function drainPass(db: Db, skip: Set<string>, outcome: DrainOutcome): Promise<number> {
  const owed = await owedResultRows(db, { skipDirs: skip });
  const failing = await failingDirs(db);
  for (const [outputDir, group] of groupByDir(owed))
    await tryDir(db, outputDir, skip, outcome, () => writeDir(db, outputDir, group, failing.has(outputDir)));
  if (owed.length > 0) return owed.length;
  // Dirs failing with no row owed (a CSV the resume scan could not read) are read again, so one
  // that was fixed is cleared; what a fixed CSV holds may owe rows elsewhere: one more pass.
  let cleared = 0;
  for (const outputDir of failing) {
    if (skip.has(outputDir)) continue;
    await tryDir(db, outputDir, skip, outcome, () => recheckDir(db, outputDir));
    if (!skip.has(outputDir)) cleared++;
  }
  return cleared;
}

/** Runs one dir's work; a file error fails that dir alone (recorded, skipped for this drain). */
async function tryDir(
  db: Db,
  outputDir: string,
  skip: Set<string>,
  outcome: DrainOutcome,
  work: () => Promise<number>,
): Promise<number> {
  try {
    const written = await work();
    outcome.written += written;
    return written;
  } catch (error) {
    // A file's trouble fails its dir alone; the ledger's (a lost connection) ends the drain.
    if (!(error instanceof CsvFileError)) throw error;
    const text = errorText(error);
    const news = await recordDirError(db, outputDir, text, Date.now());
    skip.add(outputDir);
    outcome.failed.push({ outputDir, error: text, news });
    return 0;
  }
}

/** Reads a failing dir that is owed nothing; if its file reads, the dir is fine again. */
async function recheckDir(db: Db, outputDir: string): Promise<number> {
  const path = join(outputDir, RESULTS_FILE);
  await rescanOutputDir(db, outputDir, Date.now());
  await db.transaction(async (tx) => {
    await recordWrite(tx, path);
    await clearDirError(tx, outputDir, Date.now());
  });
  return 0;
}

/** Appends one dir's owed rows (those its file does not hold yet) and marks them written. */
async function writeDir(db: Db, outputDir: string, group: OwedRow[], wasFailing: boolean): Promise<number> {
  const path = join(outputDir, RESULTS_FILE);
  let rows = group;
  if (await changedBehindOurBack(db, path)) {
    await rescanOutputDir(db, outputDir, Date.now());
    const stillOwed = new Set(
      (await owedResultRows(db, { outputDir, limit: group.length })).map((row) => row.taskId),
    );
    rows = group.filter((row) => stillOwed.has(row.taskId));
  }
  if (rows.length > 0) {
    const table = resultTable(
      ["phase"],
      rows.map((row) => ({
        leading: [row.phase],
        params: row.params,
        metrics: row.metrics,
        metadata: metadataValues(row),
      })),
    );
    await appendCsvRows(path, table.header, table.rows);
  }
  await db.transaction(async (tx) => {
    await recordWrite(tx, path);
    await markRowsWritten(tx, rows);
    if (wasFailing) await clearDirError(tx, outputDir, Date.now());
  });
  return rows.length;
}

/** Whether the file is not as the last recorded write left it (a missing file never is). */
async function changedBehindOurBack(db: Db, path: string): Promise<boolean> {
  const now = await identityOf(path);
  if (!now) return false;
  const recorded = await recordedFile(db, path);
  return !recorded || recorded.size !== now.size || recorded.mtimeNs !== now.mtimeNs;
}

async function recordWrite(db: Db, path: string): Promise<void> {
  const identity = await identityOf(path);
  if (identity) await recordFile(db, path, identity);
}

async function identityOf(path: string): Promise<FileIdentity | null> {
  try {
    const stats = await stat(path, { bigint: true });
    return { size: Number(stats.size), mtimeNs: stats.mtimeNs.toString() };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new CsvFileError(`cannot read results file ${path}`, { cause: error });
  }
}

function groupByDir(rows: OwedRow[]): Map<string, OwedRow[]> {
  const groups = new Map<string, OwedRow[]>();
  for (const row of rows) {
    const group = groups.get(row.outputDir);
    if (group) group.push(row);
    else groups.set(row.outputDir, [row]);
  }
  return groups;
}
