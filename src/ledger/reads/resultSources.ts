import type { Db } from "../db.js";
import type { GitColumnsRead } from "../resultRows.js";

/** A succeeded task as `labsweep export` reads it, with its phases and output dirs. */
export interface SucceededTaskRow extends GitColumnsRead {
  id: number;
  params_json: string;
  result_json: string | null;
  wall_seconds: number | null;
  host: string | null;
  gpu_ids: string | null;
  origin: string | null;
  usage_json: string | null;
  /** Attempts that ran to an end (succeeded, failed, timed out or out of memory). */
  attempts: number;
  /** The declaring phase's policy (for on_oom) and what on_oom did. */
  policy_json: string | null;
  oom_value: number | null;
  oom_retries: number | null;
  /** Comma-separated active phases, null when none. */
  phases: string | null;
  /** Comma-separated active output dirs, null when none. */
  dirs: string | null;
}

/** Up to `batch` succeeded active tasks with ids above `after`, in id order (keyset paging). */
export async function succeededTaskPage(db: Db, after: number, batch: number): Promise<SucceededTaskRow[]> {
  return db.all<SucceededTaskRow>(
    `SELECT t.id, t.params_json, t.result_json, t.wall_seconds, t.host, t.gpu_ids, t.origin, t.usage_json,
            t.oom_value, t.oom_retries, t.git_commit, t.git_dirty, t.git_diff_sha256, (SELECT policy_json FROM phases WHERE name = t.phase) AS policy_json,
            (SELECT count(*) FROM attempts a WHERE a.task_id = t.id AND a.outcome IN ('succeeded', 'failed', 'timeout', 'hung', 'oom')) AS attempts,
            (SELECT group_concat(DISTINCT phase) FROM placements WHERE task_id = t.id AND active = 1) AS phases,
            (SELECT group_concat(DISTINCT output_dir) FROM placements WHERE task_id = t.id AND active = 1) AS dirs
       FROM tasks t WHERE t.state = 'succeeded' AND t.active = 1 AND t.id > $1 ORDER BY t.id LIMIT $2`,
    [after, batch],
  );
}

/**
 * Every output dir some active placement writes to, sorted. The dirs are few and the placements
 * many: the index is walked from one dir to the next (each `min(output_dir) > previous` one
 * search), not read whole.
 */
export async function activeOutputDirs(db: Db): Promise<string[]> {
  const rows = await db.all<{ output_dir: string }>(
    `WITH RECURSIVE dirs (dir) AS (
       SELECT min(output_dir) FROM placements
       UNION ALL
       SELECT (SELECT min(output_dir) FROM placements WHERE output_dir > dirs.dir) FROM dirs WHERE dirs.dir IS NOT NULL
     )
     SELECT dir AS output_dir FROM dirs
      WHERE dir IS NOT NULL AND EXISTS (SELECT 1 FROM placements p WHERE p.output_dir = dirs.dir AND p.active = 1)
      ORDER BY dir`,
  );
  return rows.map((row) => row.output_dir);
}

/**
 * The tasks placed in an output dir. (Which of their rows there are written: writtenRowTasks,
 * from its index, rather than a search of result_rows for each task.)
 */
export async function tasksPlacedIn(
  db: Db,
  outputDir: string,
): Promise<Array<{ id: number; params_json: string }>> {
  return db.all<{ id: number; params_json: string }>(
    `SELECT t.id, t.params_json FROM tasks t
      WHERE t.id IN (SELECT task_id FROM placements WHERE output_dir = $1 AND active = 1)`,
    [outputDir],
  );
}

/** The metrics of those of these tasks that succeeded, by task id. */
export async function succeededMetrics(
  db: Db,
  taskIds: number[],
): Promise<Map<number, Record<string, unknown>>> {
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
