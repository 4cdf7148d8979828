import type { Db } from "./db.js";
import { assertKnownPhase } from "./knownPhase.js";
import { recordEvent } from "./recordEvent.js";

/**
 * Gives failed tasks a fresh set of retries (and of losses); gates are judged again by the
 * caller. Phases a gate blocked wait again, their reason cleared until they are judged: the old "gate failed" would be
 * stale. A `phase` the sweep lacks is an UnknownPhaseError, not "0 failed tasks".
 */
export async function retryFailed(db: Db, now: number, filter: { phase?: string } = {}): Promise<number> {
  return db.transaction(async (tx) => {
    if (filter.phase !== undefined) await assertKnownPhase(tx, filter.phase);
    const scope = filter.phase
      ? "AND id IN (SELECT task_id FROM placements WHERE phase = $1 AND active = 1)"
      : "";
    const result = await tx.run(
      `UPDATE tasks SET state = 'pending', attempts = 0, losses = 0, not_before = 0, finished_at = NULL
        WHERE state = 'failed' AND active = 1 ${scope}`,
      filter.phase ? [filter.phase] : [],
    );
    // Dependents blocked by the failures get judged again.
    // And a phase that failed fast (stopped) opens again if retried, judged like any waiting one.
    await tx.run(
      `UPDATE phases SET state = 'waiting', reason = NULL
        WHERE state = 'blocked' OR (state = 'stopped' ${filter.phase ? "AND name = $1" : ""})`,
      filter.phase ? [filter.phase] : [],
    );
    await recordEvent(tx, now, "retry_failed", null, { tasks: result.changes, phase: filter.phase ?? null });
    return result.changes;
  });
}
