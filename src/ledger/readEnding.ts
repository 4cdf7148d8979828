import type { Db } from "./db.js";
import { forUpdate } from "./dialect.js";
import { type AttemptRow, TASK_ROW_SQL, type TaskRow } from "./rows.js";

/** An attempt being ended, with its task (locked on PostgreSQL). */
export interface Ending {
  /** The columns decideFinish reads (EndingAttempt), its worker and its number. */
  attempt: Pick<AttemptRow, "id" | "host" | "gpu_ids" | "ended_at" | "outcome" | "worker" | "number">;
  task: TaskRow;
}

/**
 * Reads an attempt and its task for finishAttempt. SQLite: one statement (the transaction holds
 * the write lock; three reads per report were a tenth of a busy coordinator's time).
 * PostgreSQL: the task is locked first, then the attempt read again under the lock: a
 * concurrent report of it (an agent's resend, a lease sweeper) may have ended it meanwhile.
 * Everything that ends an attempt locks its task first.
 */
export async function readEnding(tx: Db, attemptId: number): Promise<Ending | undefined> {
  if (tx.dialect === "sqlite") {
    const row = await tx.one<TaskRow & AttemptColumns>(ENDING_SQL, [attemptId]);
    return row ? { attempt: attemptOf(row), task: row } : undefined;
  }
  const first = await tx.one<AttemptRow>("SELECT * FROM attempts WHERE id = $1", [attemptId]);
  if (!first) return undefined;
  const task = (await tx.one<TaskRow>(`${TASK_ROW_SQL} WHERE t.id = $1${forUpdate(tx, "t")}`, [
    first.task_id,
  ])) as TaskRow;
  const attempt = (await tx.one<AttemptRow>("SELECT * FROM attempts WHERE id = $1", [
    attemptId,
  ])) as AttemptRow;
  return { attempt, task };
}

/** An attempt's columns beside its task's in one row, renamed apart (`a_…`). */
export const ATTEMPT_COLUMNS = `a.id AS a_id, a.host AS a_host, a.gpu_ids AS a_gpu_ids, a.ended_at AS a_ended_at,
         a.outcome AS a_outcome, a.worker AS a_worker, a.number AS a_number`;

/** readEnding's one statement on SQLite: a TaskRow (as TASK_ROW_SQL reads it) and its attempt. */
const ENDING_SQL = `SELECT t.*, f.cwd, f.config_file, f.policy_json, ${ATTEMPT_COLUMNS}
    FROM attempts a JOIN tasks t ON t.id = a.task_id JOIN phases f ON f.name = t.phase
   WHERE a.id = $1`;

/** The attempt of a row read with ATTEMPT_COLUMNS. */
export function attemptOf(row: AttemptColumns): Ending["attempt"] {
  return {
    id: row.a_id,
    host: row.a_host,
    gpu_ids: row.a_gpu_ids,
    ended_at: row.a_ended_at,
    outcome: row.a_outcome,
    worker: row.a_worker,
    number: row.a_number,
  };
}

export interface AttemptColumns {
  a_id: number;
  a_host: string | null;
  a_gpu_ids: string | null;
  a_ended_at: number | null;
  a_outcome: string | null;
  a_worker: string;
  a_number: number;
}
