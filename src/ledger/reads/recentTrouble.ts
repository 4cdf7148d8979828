import type { Db } from "../db.js";

/** A failed task with its last attempt's error, as `status` lists the latest ones. */
export interface RecentFailure {
  task_id: number;
  error: string | null;
  params_json: string;
}

/** The five active tasks that failed last, with their last attempt's error. */
export async function recentFailures(db: Db): Promise<RecentFailure[]> {
  return db.all<RecentFailure>(
    `SELECT a.task_id, a.error, t.params_json FROM tasks t JOIN attempts a ON a.id = (
        SELECT max(id) FROM attempts WHERE task_id = t.id)
      WHERE t.state = 'failed' AND t.active = 1 ORDER BY t.finished_at DESC LIMIT 5`,
  );
}

/**
 * A task requeued because of its agent, not the task: lost (connection closed, lease expired) or
 * preempted (the agent shut down; `why` says so).
 */
export interface RecentRequeue {
  /** ISO time. */
  at: string;
  taskId: number;
  why: string;
}

/** The ten latest requeues, newest first. */
export async function recentRequeues(db: Db): Promise<RecentRequeue[]> {
  const events = await db.all<{ at: number; task_id: number; detail: string }>(
    "SELECT at, task_id, detail FROM events WHERE kind IN ('task_lost', 'task_preempted') ORDER BY id DESC LIMIT 10",
  );
  return events.map((event) => ({
    at: new Date(event.at).toISOString(),
    taskId: event.task_id,
    why: (JSON.parse(event.detail) as { why?: string }).why ?? "",
  }));
}
