import type { Db } from "./db.js";

/** The declaring phase of an attempt's task, with its policy; undefined for an unknown attempt. */
export async function phaseOfAttempt(
  tx: Db,
  attemptId: number,
): Promise<{ phase: string; policy_json: string } | undefined> {
  return tx.one<{ phase: string; policy_json: string }>(
    `SELECT t.phase, f.policy_json FROM attempts a JOIN tasks t ON t.id = a.task_id
       JOIN phases f ON f.name = t.phase WHERE a.id = $1`,
    [attemptId],
  );
}

/** How many of a phase's (declared) tasks failed for good, succeeded, and are there at all. */
export async function phaseOutcomes(
  tx: Db,
  phase: string,
): Promise<{ failed: number; succeeded: number; total: number }> {
  const row = await tx.one<{ failed: number; succeeded: number; total: number }>(
    `SELECT count(CASE WHEN state = 'failed' THEN 1 END) AS failed,
            count(CASE WHEN state = 'succeeded' THEN 1 END) AS succeeded, count(*) AS total
       FROM tasks WHERE phase = $1 AND active = 1`,
    [phase],
  );
  return {
    failed: Number(row?.failed ?? 0),
    succeeded: Number(row?.succeeded ?? 0),
    total: Number(row?.total ?? 0),
  };
}

/**
 * Blocks the attempt's task if it is pending again and its phases are all stopped or blocked:
 * a task that was running when its phase stopped is held with the rest when it comes back (else
 * the sweep would wait for it forever).
 */
export async function holdIfStopped(tx: Db, attemptId: number): Promise<void> {
  await tx.run(
    `UPDATE tasks SET state = 'blocked'
      WHERE id = (SELECT task_id FROM attempts WHERE id = $1) AND state = 'pending' AND runnable = 0
        AND EXISTS (SELECT 1 FROM placements p JOIN phases f ON f.name = p.phase
                     WHERE p.task_id = tasks.id AND p.active = 1 AND f.state = 'stopped')
        AND NOT EXISTS (SELECT 1 FROM placements p JOIN phases f ON f.name = p.phase
                         WHERE p.task_id = tasks.id AND p.active = 1 AND f.state NOT IN ('blocked', 'stopped'))`,
    [attemptId],
  );
}
