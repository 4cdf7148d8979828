import type { Task, TaskState } from "../protocol/interfaces.js";
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
}

/** Selects TaskRows: `${TASK_ROW_SQL} WHERE t.id = $1`. */
export const TASK_ROW_SQL =
  "SELECT t.*, f.cwd, f.config_file, f.policy_json FROM tasks t JOIN phases f ON f.name = t.phase";

export function toTask(row: TaskRow): Task {
  return {
    id: row.id,
    signature: row.signature,
    params: JSON.parse(row.params_json) as Params,
    command: row.command,
    cwd: row.cwd,
    configFile: row.config_file,
    policy: JSON.parse(row.policy_json) as RunPolicy,
    state: row.state,
    attempts: row.attempts,
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
