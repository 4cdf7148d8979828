import type { Db } from "../db.js";

/** One stored artifact (table `artifacts`, migration 11). */
export interface ArtifactRow {
  task_id: number;
  attempt_id: number;
  path: string;
  size: number;
  sha256: string;
  stored_at: number;
}

/** What storing an attempt's artifact needs to know: whose it is, and where the task's go. */
export interface ArtifactTarget {
  attemptId: number;
  taskId: number;
  /** The agent the attempt was leased to. */
  worker: string;
  signature: string;
  /** Where its artifacts are stored: every output dir of the task (its active placements'). */
  outputDirs: string[];
}

/** The attempt's task and output dirs; undefined for an unknown attempt. */
export async function artifactTarget(db: Db, attemptId: number): Promise<ArtifactTarget | undefined> {
  const row = await db.one<{ task_id: number; worker: string; signature: string }>(
    "SELECT a.task_id, a.worker, t.signature FROM attempts a JOIN tasks t ON t.id = a.task_id WHERE a.id = $1",
    [attemptId],
  );
  if (!row) return undefined;
  return {
    attemptId,
    taskId: row.task_id,
    worker: row.worker,
    signature: row.signature,
    outputDirs: await taskOutputDirs(db, row.task_id),
  };
}

/** A task's output dirs (its active placements', else all), in a fixed order. */
export async function taskOutputDirs(db: Db, taskId: number): Promise<string[]> {
  const rows = await db.all<{ output_dir: string; active: number }>(
    "SELECT DISTINCT output_dir, active FROM placements WHERE task_id = $1 ORDER BY output_dir",
    [taskId],
  );
  const active = rows.filter((row) => row.active === 1);
  return [...new Set((active.length > 0 ? active : rows).map((row) => row.output_dir))];
}

/** A task's signature (its artifacts' dir name); "" for an unknown task. */
export async function taskSignature(db: Db, taskId: number): Promise<string> {
  const row = await db.one<{ signature: string }>("SELECT signature FROM tasks WHERE id = $1", [taskId]);
  return row?.signature ?? "";
}

/** A task's stored artifacts, by path. */
export async function taskArtifacts(db: Db, taskId: number): Promise<ArtifactRow[]> {
  return db.all<ArtifactRow>("SELECT * FROM artifacts WHERE task_id = $1 ORDER BY path", [taskId]);
}

/** One stored artifact of a task, or undefined. */
export async function taskArtifact(db: Db, taskId: number, path: string): Promise<ArtifactRow | undefined> {
  return db.one<ArtifactRow>("SELECT * FROM artifacts WHERE task_id = $1 AND path = $2", [taskId, path]);
}

/** Every stored artifact with its task's signature, a page at a time by (task_id, path). */
export async function artifactPage(
  db: Db,
  after: { taskId: number; path: string } | null,
  limit: number,
): Promise<Array<ArtifactRow & { signature: string }>> {
  return db.all<ArtifactRow & { signature: string }>(
    `SELECT r.*, t.signature FROM artifacts r JOIN tasks t ON t.id = r.task_id
      WHERE r.task_id > $1 OR (r.task_id = $1 AND r.path > $2)
      ORDER BY r.task_id, r.path LIMIT $3`,
    [after?.taskId ?? -1, after?.path ?? "", limit],
  );
}
