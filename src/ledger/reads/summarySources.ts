import type { Db } from "../db.js";

/** One task in one of its phases, as the summary table counts it: planned, and finished or not. */
export interface PlacedTask {
  id: number;
  phase: string;
  params_json: string;
  /** pending | running | succeeded | failed | blocked | cancelled */
  state: string;
  /** The task's metrics once it succeeded (null before, and for a success that reported none). */
  result_json: string | null;
}

/**
 * Every active task of the sweep once per active phase it belongs to (of `phase` only, when
 * given), in task order, a page at a time: the summary needs the unfinished tasks too, since
 * they are what its "fewer seeds than planned" flag counts.
 */
export async function* placedTasks(db: Db, phase?: string, batch = 5000): AsyncGenerator<PlacedTask> {
  const inPhase =
    phase === undefined
      ? ""
      : " AND EXISTS (SELECT 1 FROM placements p WHERE p.task_id = t.id AND p.phase = $3 AND p.active = 1)";
  for (let after = 0; ; ) {
    const tasks = await db.all<Omit<PlacedTask, "phase">>(
      `SELECT t.id, t.params_json, t.state, t.result_json FROM tasks t
        WHERE t.active = 1 AND t.id > $1${inPhase} ORDER BY t.id LIMIT $2`,
      phase === undefined ? [after, batch] : [after, batch, phase],
    );
    if (tasks.length === 0) return;
    const last = Number((tasks.at(-1) as { id: number }).id);
    // The page's placements in one statement (by the primary key's task_id prefix), not one per task.
    const placements = await db.all<{ task_id: number; phase: string }>(
      `SELECT DISTINCT task_id, phase FROM placements
        WHERE active = 1 AND task_id > $1 AND task_id <= $2${phase === undefined ? "" : " AND phase = $3"}`,
      phase === undefined ? [after, last] : [after, last, phase],
    );
    const phasesOf = new Map<number, string[]>();
    for (const placement of placements) {
      const id = Number(placement.task_id);
      phasesOf.set(id, [...(phasesOf.get(id) ?? []), placement.phase]);
    }
    for (const task of tasks) {
      const id = Number(task.id);
      for (const placed of phasesOf.get(id) ?? []) yield { ...task, id, phase: placed };
    }
    after = last;
  }
}

/** The sweep's active phases in declaration order. */
export async function activePhases(db: Db): Promise<string[]> {
  const rows = await db.all<{ name: string }>("SELECT name FROM phases WHERE active = 1 ORDER BY position");
  return rows.map((row) => row.name);
}
