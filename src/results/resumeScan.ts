import { join } from "node:path";
import type { Db } from "../ledger/db.js";
import { activeOutputDirs, succeededMetrics, tasksPlacedIn } from "../ledger/reads/resultSources.js";
import { recordDirError } from "../ledger/resultDirErrors.js";
import {
  type FoundRow,
  importFoundRows,
  oweRowsToNewPlacements,
  writtenRowTasks,
} from "../ledger/resultRows.js";
import type { Params } from "../sweep/types.js";
import { CsvFileError, errorText } from "./csvFile.js";
import { readCsvRows } from "./csvRead.js";
import { type MatchableTask, matchRows, rowKeys, sharedKeyTasks } from "./rowMatcher.js";

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
  const dirs = await activeOutputDirs(db);
  const report: ResumeReport = { found: 0, files: 0, unmatchedRows: 0, ambiguousTasks: 0, failedDirs: 0 };
  for (const outputDir of dirs) {
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
  const csv = await readCsvRows(join(outputDir, RESULTS_FILE));
  if (!csv) return null;
  const tasks = await tasksPlacedIn(db, outputDir);
  const written = await writtenRowTasks(db, outputDir);
  const matchable: MatchableTask[] = tasks.map((task) => ({
    id: task.id,
    params: JSON.parse(task.params_json) as Params,
    written: written.has(task.id),
  }));
  const keys = rowKeys(matchable, csv.header);
  // Tasks with equal parameter values are told apart by their metrics: read those (few) only.
  const shared = sharedKeyTasks(keys.groups);
  const metrics = await succeededMetrics(
    db,
    shared.map((task) => task.id),
  );
  for (const task of shared) task.metrics = metrics.get(task.id);
  // Metrics are read (straight to JSON) only from rows the ledger does not count yet.
  const match = matchRows(keys, csv.rows, (task, row): FoundRow | undefined =>
    task.written ? undefined : { taskId: task.id, outputDir, metricsJson: keys.metricsJson(row) },
  );
  const found = await importFoundRows(db, match.matched, now);
  return { found, unmatchedRows: match.unmatched, ambiguousTasks: match.ambiguous };
}
