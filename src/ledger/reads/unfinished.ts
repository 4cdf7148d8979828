import type { Db } from "../db.js";
import { indexedBy } from "../dialect.js";

/** True while some active task is pending or running. An index probe, not a count. */
export async function hasUnfinishedTasks(db: Db): Promise<boolean> {
  const unfinished = await db.one<{ found: number }>(
    `SELECT EXISTS (SELECT 1 FROM tasks WHERE state IN ('pending', 'running') AND active = 1) AS found`,
  );
  return Boolean(unfinished?.found);
}

/**
 * Tasks that could be leased at `now` by an agent with room for them: not those of a paused
 * phase, which wait for `labsweep resume` however much room there is.
 */
export async function claimableCount(db: Db, now: number): Promise<number> {
  const row = await db.one<{ n: number }>(
    `SELECT count(*) AS n FROM tasks${indexedBy(db, "tasks_claimable")}
      WHERE state = 'pending' AND runnable = 1 AND active = 1 AND not_before <= $1
        AND phase NOT IN (SELECT name FROM phases WHERE paused = 1)`,
    [now],
  );
  return row?.n ?? 0;
}

/** A phase with unfinished tasks: its run policy and how many. */
export interface UnfinishedPhase {
  phase: string;
  policy_json: string;
  n: number;
}

/** Run policies of unfinished tasks, per phase, in phase order. A scan: callers cache it. */
export async function unfinishedPhases(db: Db): Promise<UnfinishedPhase[]> {
  return db.all<UnfinishedPhase>(
    `SELECT f.name AS phase, f.policy_json, count(*) AS n FROM tasks t JOIN phases f ON f.name = t.phase
      WHERE t.active = 1 AND t.state IN ('pending', 'running')
      GROUP BY f.name, f.policy_json, f.position ORDER BY f.position`,
  );
}
