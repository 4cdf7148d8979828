import { join } from "node:path";
import type { Db } from "../ledger/db.js";
import { importCompletedTasks, oweRowsToNewPlacements, writtenRowTasks } from "../ledger/resultRows.js";
import type { Params } from "../sweep/types.js";
import { readCsvFile } from "./csvFile.js";
import { matchCsvRows } from "./rowMatcher.js";

export const RESULTS_FILE = "final_results.csv";

export interface ResumeReport {
  /** Tasks newly known to be complete from a results CSV. */
  found: number;
  /** Output dirs that had a results CSV. */
  files: number;
  unmatchedRows: number;
  ambiguousTasks: number;
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
  const report: ResumeReport = { found: 0, files: 0, unmatchedRows: 0, ambiguousTasks: 0 };
  for (const { output_dir: outputDir } of dirs) {
    const scanned = await rescanOutputDir(db, outputDir, now);
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
): Promise<Omit<ResumeReport, "files"> | null> {
  const csv = await readCsvFile(join(outputDir, RESULTS_FILE));
  if (!csv) return null;
  const tasks = await db.all<{ id: number; params_json: string }>(
    `SELECT t.id, t.params_json FROM placements p JOIN tasks t ON t.id = p.task_id
      WHERE p.output_dir = $1 AND p.active = 1 GROUP BY t.id, t.params_json`,
    [outputDir],
  );
  const match = matchCsvRows(
    tasks.map((task) => ({ id: task.id, params: JSON.parse(task.params_json) as Params })),
    csv.header,
    csv.rows,
  );
  const alreadyWritten = await writtenRowTasks(db, outputDir);
  const fresh = match.matched.filter((row) => !alreadyWritten.has(row.taskId));
  const found = await importCompletedTasks(
    db,
    fresh.map((row) => ({ ...row, outputDir })),
    now,
  );
  return { found, unmatchedRows: match.unmatched, ambiguousTasks: match.ambiguous };
}
