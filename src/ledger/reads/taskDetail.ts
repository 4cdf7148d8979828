import type { TaskState } from "../../protocol/interfaces.js";
import type { Db } from "../db.js";
import type { AttemptRow } from "../rows.js";

/** Everything a task's page shows, but its log (GET /tasks/:id/log). */
export interface TaskDetail {
  id: number;
  signature: string;
  state: TaskState;
  phase: string;
  active: boolean;
  params: Record<string, unknown>;
  command: string;
  result: Record<string, unknown> | null;
  usage: Record<string, unknown> | null;
  wallSeconds: number | null;
  finishedAt: number | null;
  host: string | null;
  attemptsCounted: number;
  placements: Array<{
    phase: string;
    outputDir: string;
    active: boolean;
    phaseState: string;
    phaseReason: string | null;
  }>;
  attempts: Array<{
    id: number;
    number: number;
    worker: string;
    host: string | null;
    gpuIds: string | null;
    startedAt: number;
    endedAt: number | null;
    outcome: string | null;
    exitCode: number | null;
    signal: string | null;
    error: string | null;
  }>;
  /** The error of the latest attempt that failed, timed out or was lost; null if none did. */
  error: {
    attempt: number;
    outcome: string;
    message: string;
    exitCode: number | null;
    signal: string | null;
  } | null;
}

export async function taskDetail(db: Db, id: number): Promise<TaskDetail | null> {
  const task = await db.one<Record<string, unknown>>("SELECT * FROM tasks WHERE id = $1", [id]);
  if (!task) return null;
  const attempts = await db.all<AttemptRow>("SELECT * FROM attempts WHERE task_id = $1 ORDER BY number", [
    id,
  ]);
  const placements = await db.all<{
    phase: string;
    output_dir: string;
    active: number;
    state: string | null;
    reason: string | null;
  }>(
    `SELECT p.phase, p.output_dir, p.active, f.state, f.reason
       FROM placements p LEFT JOIN phases f ON f.name = p.phase WHERE p.task_id = $1 ORDER BY p.phase, p.output_dir`,
    [id],
  );
  const failed = [...attempts]
    .reverse()
    .find((attempt) => attempt.error || (attempt.outcome && attempt.outcome !== "succeeded"));
  return {
    id: Number(task.id),
    signature: String(task.signature),
    state: task.state as TaskState,
    phase: String(task.phase),
    active: Number(task.active) === 1,
    params: JSON.parse(String(task.params_json)) as Record<string, unknown>,
    command: String(task.command),
    result: task.result_json ? (JSON.parse(String(task.result_json)) as Record<string, unknown>) : null,
    usage: task.usage_json ? (JSON.parse(String(task.usage_json)) as Record<string, unknown>) : null,
    wallSeconds: task.wall_seconds == null ? null : Number(task.wall_seconds),
    finishedAt: task.finished_at == null ? null : Number(task.finished_at),
    host: (task.host as string | null) ?? null,
    attemptsCounted: Number(task.attempts),
    placements: placements.map((placement) => ({
      phase: placement.phase,
      outputDir: placement.output_dir,
      active: Number(placement.active) === 1,
      phaseState: placement.state ?? "unknown",
      phaseReason: placement.reason,
    })),
    attempts: attempts.map((attempt) => ({
      id: Number(attempt.id),
      number: Number(attempt.number),
      worker: attempt.worker,
      host: attempt.host,
      gpuIds: attempt.gpu_ids,
      startedAt: Number(attempt.started_at),
      endedAt: attempt.ended_at == null ? null : Number(attempt.ended_at),
      outcome: attempt.outcome,
      exitCode: attempt.exit_code,
      signal: attempt.signal,
      error: attempt.error,
    })),
    error: failed
      ? {
          attempt: Number(failed.number),
          outcome: failed.outcome ?? "failed",
          message: failed.error ?? `exited with ${failed.exit_code ?? failed.signal ?? "an error"}`,
          exitCode: failed.exit_code,
          signal: failed.signal,
        }
      : null,
  };
}
