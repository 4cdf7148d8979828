import type { RunPolicy } from "../sweep/types.js";
import type { Db } from "./db.js";
import { indexedBy } from "./dialect.js";

/** What the tasks of one phase that are claimable now ask for, and how many there are. */
export interface PendingResources {
  phase: string;
  count: number;
  resources: RunPolicy["resources"];
}

/**
 * The resources of the tasks claimable now, per phase: why a machine that leases nothing is idle
 * ("needs 30 GB of free GPU memory …") is told per phase, as resources are set per phase.
 */
export async function pendingResources(db: Db, now: number): Promise<PendingResources[]> {
  const rows = await db.all<{ phase: string; policy_json: string; n: number }>(
    `SELECT f.name AS phase, f.policy_json, count(*) AS n
       FROM tasks t${indexedBy(db, "tasks_claimable")} JOIN phases f ON f.name = t.phase
      WHERE t.state = 'pending' AND t.runnable = 1 AND t.active = 1 AND t.not_before <= $1 AND f.paused = 0
      GROUP BY f.name, f.policy_json, f.position
      ORDER BY f.position`,
    [now],
  );
  return rows.map((row) => ({
    phase: row.phase,
    count: Number(row.n),
    resources: (JSON.parse(row.policy_json) as RunPolicy).resources,
  }));
}
