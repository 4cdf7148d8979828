import type { Db } from "../db.js";
import type { AttemptRow } from "../rows.js";

/** One attempt by its id, or undefined. */
export async function attemptById(db: Db, attemptId: number): Promise<AttemptRow | undefined> {
  return db.one<AttemptRow>("SELECT * FROM attempts WHERE id = $1", [attemptId]);
}

/** A task's latest attempt, or the one numbered `number`; undefined when there is none. */
export async function attemptOfTask(
  db: Db,
  taskId: number,
  number: number | undefined,
): Promise<AttemptRow | undefined> {
  return db.one<AttemptRow>(
    number === undefined
      ? "SELECT * FROM attempts WHERE task_id = $1 ORDER BY number DESC LIMIT 1"
      : "SELECT * FROM attempts WHERE task_id = $1 AND number = $2",
    number === undefined ? [taskId] : [taskId, number],
  );
}

/** What failed.log says of an attempt: its task, number, params and the phases holding it. */
export interface AttemptContext {
  task_id: number;
  number: number;
  params_json: string;
  /** Comma-separated names of the phases with an active placement (null when none). */
  phases: string;
}

export async function attemptContext(db: Db, attemptId: number): Promise<AttemptContext | undefined> {
  return db.one<AttemptContext>(
    `SELECT a.task_id, a.number, t.params_json,
            (SELECT group_concat(DISTINCT p.phase) FROM placements p WHERE p.task_id = t.id AND p.active = 1) AS phases
       FROM attempts a JOIN tasks t ON t.id = a.task_id WHERE a.id = $1`,
    [attemptId],
  );
}

/** A task's row with all its attempts and placements (GET /tasks/:id); undefined if unknown. */
export async function taskRecord(
  db: Db,
  taskId: number,
): Promise<{ task: Record<string, unknown>; attempts: AttemptRow[]; placements: unknown[] } | undefined> {
  const task = await db.one<Record<string, unknown>>("SELECT * FROM tasks WHERE id = $1", [taskId]);
  if (!task) return undefined;
  const attempts = await db.all<AttemptRow>("SELECT * FROM attempts WHERE task_id = $1 ORDER BY number", [
    task.id,
  ]);
  const placements = await db.all(
    'SELECT phase, output_dir AS "outputDir", active FROM placements WHERE task_id = $1',
    [task.id],
  );
  return { task, attempts, placements };
}
