import type { Db } from "./db.js";
import { forUpdate } from "./dialect.js";
import { recordEvent } from "./recordEvent.js";
import { oweRowsSql } from "./resultRows.js";
import { type AttemptRow, TASK_ROW_SQL, type TaskRow } from "./rows.js";

/** What a successful attempt used, as the agent sampled it (see agent/sampler.ts); tasks.usage_json. */
export interface TaskUsage {
  peak_rss_mb: number;
  gpu_util_mean: number | null;
  gpu_mem_peak_mb: number | null;
  energy_wh: number | null;
  samples: number;
}

export type AttemptOutcome =
  | { kind: "succeeded"; metrics: Record<string, unknown>; wallSeconds: number; usage?: TaskUsage }
  | {
      kind: "failed" | "timeout";
      exitCode: number | null;
      signal: string | null;
      error: string;
      wallSeconds: number;
    }
  /**
   * Stopped by the user or lost with its worker: back to pending without spending a retry. How
   * a stopped process ended is kept on the attempt when known.
   */
  | { kind: "interrupted" | "lost"; error: string; exitCode?: number | null; signal?: string | null };

export interface FinishResult {
  /** What became of the task. */
  taskState: "succeeded" | "pending" | "failed" | "ignored";
  /** Set when a failure used up the last retry: the caller logs it to failed_experiments.csv. */
  finalFailure: boolean;
  /** When the task may run again, for a retried failure. */
  retryAt: number | null;
}

const MAX_BACKOFF_MS = 10 * 60_000;

/**
 * Records how an attempt ended and moves its task on: success stores the metrics and owes one
 * result row per output dir (the outbox the results writer drains); failure retries with
 * exponential backoff until `retries` is spent. Fencing: only the task's current attempt may
 * change it, except that a late success is still accepted while the task has no result.
 */
export async function finishAttempt(
  db: Db,
  attemptId: number,
  outcome: AttemptOutcome,
  now: number,
): Promise<FinishResult> {
  return db.transaction(async (tx) => {
    let attempt = await tx.one<AttemptRow>("SELECT * FROM attempts WHERE id = $1", [attemptId]);
    if (!attempt) throw new Error(`unknown attempt ${attemptId}`);
    const task = (await tx.one<TaskRow>(`${TASK_ROW_SQL} WHERE t.id = $1${forUpdate(tx, "t")}`, [
      attempt.task_id,
    ])) as TaskRow;
    // PostgreSQL: a concurrent report of this attempt (an agent's resend, a lease sweeper) may
    // have ended it while this one waited for the task's lock: read it again under the lock.
    // Everything that ends an attempt locks its task first. (SQLite: nothing ran in between.)
    if (tx.dialect === "postgres")
      attempt = (await tx.one<AttemptRow>("SELECT * FROM attempts WHERE id = $1", [attemptId])) as AttemptRow;
    const ignored: FinishResult = { taskState: "ignored", finalFailure: false, retryAt: null };
    if (attempt.ended_at !== null && attempt.outcome !== "lost") return ignored;
    const current = task.attempt_id === attemptId && task.state === "running";
    // A cancelled task wants no result: its late success is ignored like any stale report.
    const lateSuccess =
      outcome.kind === "succeeded" && task.state !== "succeeded" && task.state !== "cancelled";
    await tx.run(
      `UPDATE attempts SET ended_at = $2, outcome = $3, exit_code = $4, signal = $5, error = $6
        WHERE id = $1`,
      [
        attemptId,
        now,
        outcome.kind,
        ("exitCode" in outcome ? outcome.exitCode : null) ?? null,
        ("signal" in outcome ? outcome.signal : null) ?? null,
        "error" in outcome ? outcome.error : null,
      ],
    );
    if (!current && !lateSuccess) return ignored;

    if (outcome.kind === "succeeded") {
      await tx.run(
        `UPDATE tasks SET state = 'succeeded', attempt_id = NULL, result_json = $2, wall_seconds = $3,
                host = $4, gpu_ids = $5, finished_at = $6, origin = 'run', usage_json = $7
          WHERE id = $1`,
        [
          task.id,
          JSON.stringify(outcome.metrics),
          outcome.wallSeconds,
          attempt.host,
          attempt.gpu_ids,
          now,
          outcome.usage ? JSON.stringify(outcome.usage) : null,
        ],
      );
      await oweResultRows(tx, task.id);
      await recordEvent(tx, now, "task_succeeded", task.id, { attempt: attemptId });
      return { taskState: "succeeded", finalFailure: false, retryAt: null };
    }
    if (outcome.kind === "interrupted" || outcome.kind === "lost") {
      await tx.run("UPDATE tasks SET state = 'pending', attempt_id = NULL, not_before = 0 WHERE id = $1", [
        task.id,
      ]);
      await recordEvent(tx, now, `task_${outcome.kind}`, task.id, { attempt: attemptId, why: outcome.error });
      return { taskState: "pending", finalFailure: false, retryAt: null };
    }
    const retries = (JSON.parse(task.policy_json) as { retries: number; backoffMs: number }).retries;
    const backoffMs = (JSON.parse(task.policy_json) as { backoffMs: number }).backoffMs;
    const spent = task.attempts + 1;
    if (spent <= retries) {
      const retryAt = now + Math.min(MAX_BACKOFF_MS, backoffMs * 2 ** (spent - 1));
      await tx.run(
        "UPDATE tasks SET state = 'pending', attempt_id = NULL, attempts = $2, not_before = $3 WHERE id = $1",
        [task.id, spent, retryAt],
      );
      await recordEvent(tx, now, "task_retry", task.id, {
        attempt: attemptId,
        retryAt,
        error: outcome.error,
      });
      return { taskState: "pending", finalFailure: false, retryAt };
    }
    await tx.run(
      "UPDATE tasks SET state = 'failed', attempt_id = NULL, attempts = $2, finished_at = $3 WHERE id = $1",
      [task.id, spent, now],
    );
    await recordEvent(tx, now, "task_failed", task.id, { attempt: attemptId, error: outcome.error });
    return { taskState: "failed", finalFailure: true, retryAt: null };
  });
}

/**
 * One row per output dir; where several phases put the task in one dir, the row carries the
 * first phase in declaration order.
 */
export async function oweResultRows(tx: Db, taskId: number): Promise<void> {
  await tx.run(oweRowsSql("p.task_id = $1"), [taskId]);
}
