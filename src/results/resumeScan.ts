import { join } from "node:path";
import type { Db } from "../ledger/db.js";
import { importCompletedTasks, writtenRowTasks } from "../ledger/resultRows.js";
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
    const csv = await readCsvFile(join(outputDir, RESULTS_FILE));
    if (!csv) continue;
    report.files++;
    const tasks = await db.all<{ id: number; params_json: string }>(
      `SELECT t.id, t.params_json FROM placements p JOIN tasks t ON t.id = p.task_id
        WHERE p.output_dir = $1 AND p.active = 1 GROUP BY t.id`,
      [outputDir],
    );
    const match = matchCsvRows(
      tasks.map((task) => ({ id: task.id, params: JSON.parse(task.params_json) as Params })),
      csv.header,
      csv.rows,
    );
    report.unmatchedRows += match.unmatched;
    report.ambiguousTasks += match.ambiguous;
    const alreadyWritten = await writtenRowTasks(db, outputDir);
    const fresh = match.matched.filter((row) => !alreadyWritten.has(row.taskId));
    report.found += await importCompletedTasks(
      db,
      fresh.map((row) => ({ ...row, outputDir })),
      now,
    );
  }
  return report;
}

/**
 * A task that had already succeeded when a config gave it a new placement (a phase added later
 * that shares it, or a changed output_dir) is owed a row there too: rows are otherwise owed only
 * when a task succeeds. Runs before the scan, so a row already in that dir's CSV is marked
 * written rather than written twice.
 */
async function oweRowsToNewPlacements(db: Db): Promise<void> {
  await db.run(
    `INSERT INTO result_rows (task_id, output_dir, phase, written)
     SELECT task_id, output_dir, phase, 0 FROM (
         -- SQLite takes the bare column phase from the row with min(position): the first phase.
         SELECT p.task_id, p.output_dir, p.phase, min(f.position)
           FROM placements p JOIN phases f ON f.name = p.phase JOIN tasks t ON t.id = p.task_id
          WHERE p.active = 1 AND t.state = 'succeeded'
            AND NOT EXISTS (SELECT 1 FROM result_rows r WHERE r.task_id = p.task_id AND r.output_dir = p.output_dir)
          GROUP BY p.task_id, p.output_dir
       ) WHERE true
     ON CONFLICT (task_id, output_dir) DO NOTHING`,
  );
}
