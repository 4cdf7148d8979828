import type { Db } from "./db.js";
import { forUpdate } from "./dialect.js";
import type { ArtifactRow } from "./reads/artifacts.js";

/**
 * Makes room for `attemptId`'s artifacts: a task keeps one attempt's files. Rows of an earlier
 * attempt (one that uploaded, then lost its task to a requeue) are deleted and returned, for the
 * caller to delete their files before it puts this attempt's in place. Refused when another
 * attempt of the task succeeded: the files beside its result are that attempt's, and stay.
 */
export async function supersedeArtifacts(
  db: Db,
  taskId: number,
  attemptId: number,
): Promise<{ superseded: ArtifactRow[] } | { refused: string }> {
  return db.transaction(async (tx) => {
    const refused = await lockWinner(tx, taskId, attemptId);
    if (refused) return { refused };
    const superseded = await tx.all<ArtifactRow>(
      "SELECT * FROM artifacts WHERE task_id = $1 AND attempt_id <> $2 ORDER BY path",
      [taskId, attemptId],
    );
    if (superseded.length > 0)
      await tx.run("DELETE FROM artifacts WHERE task_id = $1 AND attempt_id <> $2", [taskId, attemptId]);
    return { superseded };
  });
}

/**
 * Records one artifact, in place and checked; the same path again (a resend) replaces it.
 * Refused, like supersedeArtifacts, once another attempt succeeded: that success may have been
 * recorded while this file was put in place, and the files beside its result are its own.
 */
export async function recordArtifact(db: Db, row: ArtifactRow): Promise<{ refused: string } | null> {
  return db.transaction(async (tx) => {
    const refused = await lockWinner(tx, row.task_id, row.attempt_id);
    if (refused) return { refused };
    await tx.run(
      `INSERT INTO artifacts (task_id, attempt_id, path, size, sha256, stored_at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (task_id, path) DO UPDATE SET attempt_id = excluded.attempt_id, size = excluded.size,
           sha256 = excluded.sha256, stored_at = excluded.stored_at`,
      [row.task_id, row.attempt_id, row.path, row.size, row.sha256, row.stored_at],
    );
    return null;
  });
}

/**
 * Locks the task row — so two attempts' uploads on two replicas, and an upload and a finish,
 * take turns — and says why `attemptId` may not store files when another attempt succeeded.
 */
async function lockWinner(tx: Db, taskId: number, attemptId: number): Promise<string | null> {
  await tx.one(`SELECT t.id FROM tasks t WHERE t.id = $1${forUpdate(tx, "t")}`, [taskId]);
  const winner = await tx.one<{ number: number }>(
    "SELECT number FROM attempts WHERE task_id = $1 AND id <> $2 AND outcome = 'succeeded' LIMIT 1",
    [taskId, attemptId],
  );
  return winner ? `attempt ${winner.number} of task ${taskId} succeeded; its artifacts are the task's` : null;
}
