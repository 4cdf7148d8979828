import type { Db } from "./db.js";
import { forUpdate } from "./dialect.js";
import { assertKnownPhase } from "./knownPhase.js";
import { recordEvent } from "./recordEvent.js";

/**
 * Marks unfinished tasks cancelled. A running attempt keeps running until its agent hears of it
 * (its heartbeat finds the attempt stale, or the coordinator pushes a cancel); whatever it
 * reports then is ignored, because the task no longer points at it. A `phase` the sweep lacks is
 * an UnknownPhaseError.
 */
export async function cancelTasks(
  db: Db,
  filter: { taskIds?: number[]; phase?: string },
  now: number,
): Promise<{ tasks: number; running: Array<{ worker: string; attemptId: number }> }> {
  return db.transaction(async (tx) => {
    const ids = new Set<number>(filter.taskIds ?? []);
    if (filter.phase) {
      // An unknown phase is named, as `retry --phase` names it, not "0 task(s) cancelled".
      await assertKnownPhase(tx, filter.phase);
      const rows = await tx.all<{ task_id: number }>(
        "SELECT task_id FROM placements WHERE phase = $1 AND active = 1",
        [filter.phase],
      );
      for (const row of rows) ids.add(row.task_id);
    }
    const running: Array<{ worker: string; attemptId: number }> = [];
    let tasks = 0;
    for (const id of ids) {
      const attempt = await tx.one<{ id: number; worker: string }>(
        `SELECT a.id, a.worker FROM tasks t JOIN attempts a ON a.id = t.attempt_id
          WHERE t.id = $1 AND t.state = 'running'${forUpdate(tx, "t")}`,
        [id],
      );
      const updated = await tx.run(
        `UPDATE tasks SET state = 'cancelled', attempt_id = NULL, finished_at = $2
          WHERE id = $1 AND state IN ('pending', 'running', 'blocked')`,
        [id, now],
      );
      if (updated.changes === 0) continue;
      tasks++;
      if (attempt) running.push({ worker: attempt.worker, attemptId: attempt.id });
    }
    await recordEvent(tx, now, "tasks_cancelled", null, { tasks, phase: filter.phase ?? null });
    return { tasks, running };
  });
}
