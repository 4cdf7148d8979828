import { join } from "node:path";
import type { Db } from "../ledger/db.js";
import { recordDirError } from "../ledger/resultDirErrors.js";
import { importCompletedTasks, oweRowsToNewPlacements } from "../ledger/resultRows.js";
import type { Params } from "../sweep/types.js";
import { CsvFileError, errorText, readCsvFile } from "./csvFile.js";
import { type MatchableTask, matchCsvRows, tasksSharingKeys } from "./rowMatcher.js";

export const RESULTS_FILE = "final_results.csv";

export interface ResumeReport {
  /** Tasks newly known to be complete from a results CSV. */
  found: number;
  /** Output dirs that had a results CSV. */
  files: number;
  unmatchedRows: number;
  ambiguousTasks: number;
  /** Output dirs whose CSV could not be read (result_dir_errors says why). */
  failedDirs: number;
}

/**
 * Reads every output dir's final_results.csv — written by labsweep or by the original system —
 * and records the rows it finds: their tasks are complete, and other output dirs they belong to
 * are owed a copy. Also the crash-recovery step of the results writer: a row that reached the
 * file just before a crash is found here and never written twice.
 */
export async function resumeFromResults(db: Db, now: number): Promise<ResumeReport> {
  await oweRowsToNewPlacements(db);
  const dirs = await db.all<{ output_dir: string }>(
    "SELECT DISTINCT output_dir FROM placements WHERE active = 1 ORDER BY output_dir",
  );
  const report: ResumeReport = { found: 0, files: 0, unmatchedRows: 0, ambiguousTasks: 0, failedDirs: 0 };
  for (const { output_dir: outputDir } of dirs) {
    let scanned: Awaited<ReturnType<typeof rescanOutputDir>>;
    try {
      scanned = await rescanOutputDir(db, outputDir, now);
    } catch (error) {
      // An unreadable or malformed CSV holds up its own dir only: the writer reads it again
      // before appending there, and fails that dir alone until it is fixed (status shows why).
      if (!(error instanceof CsvFileError)) throw error;
      await recordDirError(db, outputDir, errorText(error), now);
      report.failedDirs++;
      continue;
    }
    if (!scanned) continue;
    report.files++;
    report.found += scanned.found;
    report.unmatchedRows += scanned.unmatchedRows;
    report.ambiguousTasks += scanned.ambiguousTasks;
  }
  return report;
}

/**
 * Reads one output dir's final_results.csv and records the rows it holds that the ledger does
 * not know are there: their tasks are complete, their rows written. Null when there is no file.
 * The results writer calls it for a file that changed behind its back (a writer that crashed
 * between its append and its commit), so such rows are never written twice.
 */
export async function rescanOutputDir(
  db: Db,
  outputDir: string,
  now: number,
): Promise<Omit<ResumeReport, "files" | "failedDirs"> | null> {
  const csv = await readCsvFile(join(outputDir, RESULTS_FILE));
  if (!csv) return null;
  const tasks = await db.all<{ id: number; params_json: string; written: number | null }>(
    `SELECT t.id, t.params_json, r.written
       FROM tasks t LEFT JOIN result_rows r ON r.task_id = t.id AND r.output_dir = $1
      WHERE t.id IN (SELECT task_id FROM placements WHERE output_dir = $1 AND active = 1)`,
    [outputDir],
  );
  const matchable: MatchableTask[] = tasks.map((task) => ({
    id: task.id,
    params: JSON.parse(task.params_json) as Params,
    written: Number(task.written) === 1,
  }));
  // Tasks with equal parameter values are told apart by their metrics: read those (few) only.
  const metrics = await succeededMetrics(db, tasksSharingKeys(matchable, csv.header));
  for (const task of matchable) task.metrics = metrics.get(task.id);
  const match = matchCsvRows(matchable, csv.header, csv.rows);
  const alreadyWritten = new Set(tasks.filter((task) => Number(task.written) === 1).map((task) => task.id));
  const fresh = match.matched.filter((row) => !alreadyWritten.has(row.taskId));
  const found = await importCompletedTasks(
    db,
    fresh.map((row) => ({ ...row, outputDir })),
    now,
  );
  return { found, unmatchedRows: match.unmatched, ambiguousTasks: match.ambiguous };
}

/** The metrics of those of these tasks that succeeded, by task id. */
async function succeededMetrics(db: Db, taskIds: number[]): Promise<Map<number, Record<string, unknown>>> {
  const metrics = new Map<number, Record<string, unknown>>();
  for (let start = 0; start < taskIds.length; start += 500) {
    const slice = taskIds.slice(start, start + 500);
    const rows = await db.all<{ id: number; result_json: string | null }>(
      `SELECT id, result_json FROM tasks WHERE state = 'succeeded' AND id IN (${slice.map((_, i) => `$${i + 1}`).join(", ")})`,
      slice,
    );
    for (const row of rows) metrics.set(Number(row.id), row.result_json ? JSON.parse(row.result_json) : {});
  }
  return metrics;
}
