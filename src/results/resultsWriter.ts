import { stat } from "node:fs/promises";
import { join } from "node:path";
import type { Db } from "../ledger/db.js";
import { LEDGER_LOCKS, tryLockLedger } from "../ledger/dialect.js";
import { markRowsWritten, type OwedRow, owedResultRows } from "../ledger/resultRows.js";
import { appendCsvRows, formatCell } from "./csvFile.js";
import { RESULTS_FILE, rescanOutputDir } from "./resumeScan.js";
import { METADATA_COLUMNS } from "./rowMatcher.js";

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
 * Columns: `phase`, the parameters, the metrics, then run metadata.
 */
export async function writeOwedResults(db: Db): Promise<number> {
  return (await writeOwedResultsOnce(db)) ?? 0;
}

/** writeOwedResults, or null when another replica is writing right now (it will take these rows too). */
export async function writeOwedResultsOnce(db: Db): Promise<number | null> {
  // On SQLite the ledger has one coordinator: no lock, and no transaction held across file I/O.
  if (db.dialect === "sqlite") {
    let written = 0;
    for (let pass = await drainPass(db); pass.owed > 0; pass = await drainPass(db)) written += pass.written;
    return written;
  }
  // One transaction per pass, not one for the whole drain: under load rows keep arriving and a
  // drain may not end for the whole run, and while a transaction that wrote is open PostgreSQL
  // can clean up no row version that died after it began (claimers then wade through them all).
  let written = 0;
  for (;;) {
    const pass = await db.transaction(async (tx) =>
      (await tryLockLedger(tx, LEDGER_LOCKS.results)) ? drainPass(tx) : null,
    );
    // Another replica took the duty between passes: it drains what is left.
    if (pass === null) return written > 0 ? written : null;
    if (pass.owed === 0) return written;
    written += pass.written;
  }
}

/** Writes the rows owed now (up to owedResultRows' limit): how many were owed, how many written. */
async function drainPass(db: Db): Promise<{ owed: number; written: number }> {
  let written = 0;
  const owed = await owedResultRows(db);
  for (const [outputDir, group] of groupByDir(owed)) {
    const path = join(outputDir, RESULTS_FILE);
    let rows = group;
    if (await changedBehindOurBack(db, path)) {
      await rescanOutputDir(db, outputDir, Date.now());
      const stillOwed = new Set(
        (await owedResultRows(db)).filter((row) => row.outputDir === outputDir).map((row) => row.taskId),
      );
      rows = group.filter((row) => stillOwed.has(row.taskId));
    }
    if (rows.length > 0) {
      const header = headerFor(rows);
      await appendCsvRows(
        path,
        header,
        rows.map((row) => cellsFor(row, header)),
      );
    }
    await db.transaction(async (tx) => {
      await recordFile(tx, path);
      await markRowsWritten(tx, rows);
    });
    written += rows.length;
  }
  return { owed: owed.length, written };
}

/** Whether the file is not as the last recorded write left it (a missing file never is). */
async function changedBehindOurBack(db: Db, path: string): Promise<boolean> {
  const now = await identityOf(path);
  if (!now) return false;
  const recorded = await db.one<{ size: number; mtime_ns: string }>(
    "SELECT size, mtime_ns FROM result_files WHERE path = $1",
    [path],
  );
  return !recorded || Number(recorded.size) !== now.size || recorded.mtime_ns !== now.mtimeNs;
}

async function recordFile(db: Db, path: string): Promise<void> {
  const identity = await identityOf(path);
  if (!identity) return;
  await db.run(
    `INSERT INTO result_files (path, size, mtime_ns) VALUES ($1, $2, $3)
     ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns`,
    [path, identity.size, identity.mtimeNs],
  );
}

async function identityOf(path: string): Promise<{ size: number; mtimeNs: string } | null> {
  try {
    const stats = await stat(path, { bigint: true });
    return { size: Number(stats.size), mtimeNs: stats.mtimeNs.toString() };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
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

function headerFor(rows: OwedRow[]): string[] {
  const params = new Set<string>();
  const metrics = new Set<string>();
  for (const row of rows) {
    for (const name of Object.keys(row.params)) params.add(name);
    for (const name of Object.keys(row.metrics)) if (!params.has(name)) metrics.add(name);
  }
  const reserved = new Set<string>(["phase", ...params, ...metrics]);
  return ["phase", ...params, ...metrics, ...METADATA_COLUMNS.filter((name) => !reserved.has(name))];
}

function cellsFor(row: OwedRow, header: string[]): string[] {
  const metadata: Record<string, unknown> = {
    wall_seconds: row.wallSeconds === null ? null : Math.round(row.wallSeconds * 1000) / 1000,
    peak_rss_mb: row.usage?.peak_rss_mb,
    gpu_util_mean: row.usage?.gpu_util_mean,
    gpu_mem_peak_mb: row.usage?.gpu_mem_peak_mb,
    energy_wh: row.usage?.energy_wh,
    attempts: row.attempts,
    host: row.host,
    gpu_ids: row.gpuIds,
  };
  return header.map((name) => {
    if (name === "phase") return row.phase;
    if (name in row.params) return formatCell(row.params[name]);
    if (name in row.metrics) return formatCell(row.metrics[name]);
    return formatCell(metadata[name]);
  });
}
