import type { GitState, Task, TaskState } from "../protocol/interfaces.js";
import { renderEnv } from "../sweep/envSetting.js";
import { withOomValue } from "../sweep/oomScaling.js";
import type { Params, RunPolicy } from "../sweep/types.js";

/** A task row joined with its declaring phase's shared columns (see TASK_ROW_SQL). */
export interface TaskRow {
  id: number;
  signature: string;
  params_json: string;
  command: string;
  phase: string;
  cwd: string;
  config_file: string;
  policy_json: string;
  state: TaskState;
  runnable: number;
  attempts: number;
  /** Attempts lost with their worker since the task's last fresh start (max_lost). */
  losses: number;
  not_before: number;
  attempt_id: number | null;
  active: number;
  result_json: string | null;
  wall_seconds: number | null;
  host: string | null;
  gpu_ids: string | null;
  finished_at: number | null;
  origin: string | null;
  /** The on_oom parameter's value after out-of-memory retries; null: the declared one. */
  oom_value: number | null;
  /** Out-of-memory retries so far (they spend no retry). */
  oom_retries: number;
  /** The provenance of its successful attempt (migration 14); null outside git. */
  git_commit?: string | null;
  git_dirty?: number | null;
  git_diff_sha256?: string | null;
  /** Its config's current snapshot (TASK_ROW_SQL): the copy's dir and its GitState JSON; null: none. */
  snapshot_dir?: string | null;
  snapshot_git?: string | null;
}

/**
 * Selects TaskRows: `${TASK_ROW_SQL} WHERE t.id = $1`. With its config's current snapshot, if it
 * takes one: a lease's task runs from the copy (toTask).
 */
export const TASK_ROW_SQL = taskRowsFrom("tasks t");

/** TASK_ROW_SQL reading `t` from `tasks`, e.g. "tasks t INDEXED BY tasks_claimable". */
export function taskRowsFrom(tasks: string): string {
  return `SELECT t.*, f.cwd, f.config_file, f.policy_json, s.dir AS snapshot_dir, s.git_json AS snapshot_git
  FROM ${tasks} JOIN phases f ON f.name = t.phase
  LEFT JOIN snapshots s ON s.config_file = f.config_file AND s.current = 1`;
}

/**
 * A task as its next attempt runs it: after out-of-memory retries, with the on_oom parameter's
 * scaled value in its parameters and command (its signature and CSV row keep the declared one).
 */
export function toTask(row: TaskRow): Task {
  const policy = JSON.parse(row.policy_json) as RunPolicy;
  const declared = JSON.parse(row.params_json) as Params;
  let params = declared;
  let command = row.command;
  // `!= null`: a row read without the column (a hand-built one) has undefined, meaning the same.
  if (row.oom_value != null && policy.onOom)
    ({ params, command } = withOomValue(policy.onOom, params, row.oom_value));
  return {
    id: row.id,
    signature: row.signature,
    params,
    command,
    cwd: row.snapshot_dir ?? row.cwd,
    configFile: row.config_file,
    policy,
    state: row.state,
    attempts: row.attempts,
    // The copy's provenance is the code's: the agent reads no git in it.
    ...(row.snapshot_dir != null && {
      snapshot: {
        sourceDir: row.cwd,
        git: row.snapshot_git ? (JSON.parse(row.snapshot_git) as GitState) : null,
      },
    }),
    // From the declared parameters: every attempt, an out-of-memory retry's too, sees the same.
    ...(policy.env && {
      env: renderEnv(policy.env, {
        taskId: row.id,
        signature: row.signature,
        params: declared,
        phase: row.phase,
      }),
    }),
  };
}

export interface AttemptRow {
  id: number;
  task_id: number;
  number: number;
  worker: string;
  host: string | null;
  gpu_ids: string | null;
  started_at: number;
  lease_expires: number | null;
  ended_at: number | null;
  outcome: string | null;
  exit_code: number | null;
  signal: string | null;
  error: string | null;
  pid: number | null;
  log_path: string | null;
}
