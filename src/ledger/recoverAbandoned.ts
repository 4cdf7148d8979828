import type { Db } from "./db.js";
import { holdIfStopped } from "./failingPhases.js";
import { finishAttempt } from "./finishAttempt.js";
import type { AttemptRow } from "./rows.js";

/**
 * Attempts still open in the ledger whose worker is gone (a previous `labsweep run` that was
 * killed, or an agent whose lease ran out). Their tasks go back to pending without spending a
 * retry: losing the worker is not the task's fault.
 */
export async function openAttempts(
  db: Db,
  filter: { worker?: string; expiredBy?: number } = {},
): Promise<AttemptRow[]> {
  const conditions = ["ended_at IS NULL"];
  const params: unknown[] = [];
  if (filter.worker !== undefined) {
    params.push(filter.worker);
    conditions.push(`worker = $${params.length}`);
  }
  if (filter.expiredBy !== undefined) {
    params.push(filter.expiredBy);
    conditions.push(`lease_expires < $${params.length}`);
  }
  return db.all<AttemptRow>(`SELECT * FROM attempts WHERE ${conditions.join(" AND ")} ORDER BY id`, params);
}

/**
 * Ends attempts as `lost` (the default: their tasks go back to pending, or fail once lost
 * `max_lost` times — those are returned with why, for failed_experiments.csv) or as
 * `interrupted` (back to pending, spending neither a retry nor a loss).
 */
export async function requeueAttempts(
  db: Db,
  attempts: AttemptRow[],
  why: string,
  now: number,
  kind: "lost" | "interrupted" = "lost",
): Promise<{ requeued: number; failed: Array<{ attemptId: number; error: string }> }> {
  let requeued = 0;
  const failed: Array<{ attemptId: number; error: string }> = [];
  for (const attempt of attempts) {
    const result = await finishAttempt(db, attempt.id, { kind, error: why }, now);
    if (result.taskState === "pending") {
      requeued++;
      // Back in the queue of a phase that failed fast meanwhile: held with the rest of it.
      await holdIfStopped(db, attempt.id);
    }
    if (result.finalFailure) failed.push({ attemptId: attempt.id, error: result.error ?? why });
  }
  return { requeued, failed };
}

/** Records the process a running attempt started, so a later incarnation can kill leftovers. */
export async function recordAttemptProcess(
  db: Db,
  attemptId: number,
  pid: number,
  logPath: string,
): Promise<void> {
  await db.run("UPDATE attempts SET pid = $2, log_path = $3 WHERE id = $1", [attemptId, pid, logPath]);
}

/** Extends the leases of attempts still running; returns the ids that are no longer current. */
export async function renewLeases(db: Db, attemptIds: number[], until: number): Promise<number[]> {
  const stale: number[] = [];
  for (const id of attemptIds) {
    const renewed = await db.run(
      `UPDATE attempts SET lease_expires = $2
        WHERE id = $1 AND ended_at IS NULL AND id IN (SELECT attempt_id FROM tasks WHERE attempt_id = $1)`,
      [id, until],
    );
    if (renewed.changes === 0) stale.push(id);
  }
  return stale;
}

/** Sets the leases of open attempts to run until `until` (a coordinator restart's grace). */
export async function extendLeases(db: Db, attemptIds: number[], until: number): Promise<void> {
  await db.transaction(async (tx) => {
    for (const id of attemptIds) {
      await tx.run("UPDATE attempts SET lease_expires = $2 WHERE id = $1 AND ended_at IS NULL", [id, until]);
    }
  });
}
