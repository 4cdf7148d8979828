import type { Params } from "../sweep/types.js";
import type { Db } from "./db.js";
import { oweResultRows } from "./finishAttempt.js";
import { recordEvent } from "./recordEvent.js";

/** A row owed to `{outputDir}/final_results.csv`. */
export interface OwedRow {
  taskId: number;
  outputDir: string;
  phase: string;
  params: Params;
  metrics: Record<string, unknown>;
  wallSeconds: number | null;
  attempts: number;
  host: string | null;
  gpuIds: string | null;
}

interface OwedRowRecord {
  task_id: number;
  output_dir: string;
  phase: string;
  params_json: string;
  result_json: string | null;
  wall_seconds: number | null;
  attempts: number;
  host: string | null;
  gpu_ids: string | null;
}

/** Rows not yet on disk, grouped by output dir (oldest first). */
export async function owedResultRows(db: Db, limit = 10_000): Promise<OwedRow[]> {
  const rows = await db.all<OwedRowRecord>(
    `SELECT r.task_id, r.output_dir, r.phase, t.params_json, t.result_json, t.wall_seconds, t.host, t.gpu_ids,
            (SELECT count(*) FROM attempts a WHERE a.task_id = t.id AND a.outcome IN ('succeeded', 'failed', 'timeout')) AS attempts
       FROM result_rows r JOIN tasks t ON t.id = r.task_id
      WHERE r.written = 0
      ORDER BY r.output_dir, r.task_id
      LIMIT $1`,
    [limit],
  );
  return rows.map((row) => ({
    taskId: row.task_id,
    outputDir: row.output_dir,
    phase: row.phase,
    params: JSON.parse(row.params_json) as Params,
    metrics: row.result_json ? (JSON.parse(row.result_json) as Record<string, unknown>) : {},
    wallSeconds: row.wall_seconds,
    attempts: row.attempts,
    host: row.host,
    gpuIds: row.gpu_ids,
  }));
}

/** Marks rows as on disk: called only after the CSV write that holds them was fsynced. */
export async function markRowsWritten(
  db: Db,
  rows: ReadonlyArray<{ taskId: number; outputDir: string }>,
): Promise<void> {
  if (rows.length === 0) return;
  await db.transaction(async (tx) => {
    for (const row of rows) {
      await tx.run("UPDATE result_rows SET written = 1 WHERE task_id = $1 AND output_dir = $2", [
        row.taskId,
        row.outputDir,
      ]);
    }
  });
}

/** Tasks whose row in this output dir is already on disk. */
export async function writtenRowTasks(db: Db, outputDir: string): Promise<Set<number>> {
  const rows = await db.all<{ task_id: number }>(
    "SELECT task_id FROM result_rows WHERE output_dir = $1 AND written = 1",
    [outputDir],
  );
  return new Set(rows.map((row) => row.task_id));
}

/**
 * Results CSVs already hold these tasks' rows: each task is complete (taking the CSV's metrics
 * if the ledger has none), that dir's row counts as written, and the other dirs it belongs to
 * are owed a copy. One transaction for the batch. Returns how many tasks became complete.
 */
export async function importCompletedTasks(
  db: Db,
  found: ReadonlyArray<{ taskId: number; outputDir: string; metrics: Record<string, unknown> }>,
  now: number,
): Promise<number> {
  if (found.length === 0) return 0;
  return db.transaction(async (tx) => {
    let completed = 0;
    for (const row of found) {
      const updated = await tx.run(
        `UPDATE tasks SET state = 'succeeded', result_json = $2, finished_at = $3, origin = 'csv', attempt_id = NULL
          WHERE id = $1 AND state != 'succeeded'`,
        [row.taskId, JSON.stringify(row.metrics), now],
      );
      if (updated.changes > 0) {
        completed++;
        await tx.run(
          "UPDATE attempts SET ended_at = $2, outcome = 'superseded' WHERE task_id = $1 AND ended_at IS NULL",
          [row.taskId, now],
        );
        await recordEvent(tx, now, "task_found_in_csv", row.taskId, { outputDir: row.outputDir });
      }
      await oweResultRows(tx, row.taskId);
      await tx.run(
        `INSERT INTO result_rows (task_id, output_dir, phase, written) VALUES ($1, $2, '', 1)
         ON CONFLICT (task_id, output_dir) DO UPDATE SET written = 1`,
        [row.taskId, row.outputDir],
      );
    }
    return completed;
  });
}
