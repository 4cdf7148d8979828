import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, touchPrivateFile } from "../ledger/privateFiles.js";
import type { Task } from "../ledger/rows.js";
import type { Placement } from "../sweep/types.js";

export interface AttemptFiles {
  dir: string;
  logPath: string;
  resultPath: string;
  configPath: string;
}

/** Where one attempt's log, result and config live: `<state>/tasks/<id>/`. */
export function attemptFiles(stateDir: string, taskId: number, attemptNumber: number): AttemptFiles {
  const dir = join(stateDir, "tasks", String(taskId));
  return {
    dir,
    logPath: join(dir, `attempt-${attemptNumber}.log`),
    resultPath: join(dir, `attempt-${attemptNumber}.result.json`),
    configPath: join(dir, "config.json"),
  };
}

/**
 * Writes the task's full config for LABSWEEP_CONFIG_FILE.
 */
export function prepareAttempt(
  files: AttemptFiles,
  task: Task,
  attemptId: number,
  placements: Placement[] = [],
): void {
  // Synchronous: two small writes cost less than two trips through the thread pool, and this
  // sits between a slot freeing up and its next task starting.
  mkdirSync(files.dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  const config = {
    task_id: task.id,
    signature: task.signature,
    attempt_id: attemptId,
    params: task.params,
    command: task.command,
    cwd: task.cwd,
    config_file: task.configFile,
    // Every phase and output dir the task belongs to; LABSWEEP_OUTPUT_DIR is the first one's.
    phases: [...new Set(placements.map((placement) => placement.phase))],
    output_dir: placements[0]?.outputDir ?? null,
    placements: placements.map((placement) => ({ phase: placement.phase, output_dir: placement.outputDir })),
    retries: task.policy.retries,
    timeout_ms: task.policy.timeoutMs,
    backoff_ms: task.policy.backoffMs,
    resources: task.policy.resources,
  };
  // The result path is new for every attempt, so no stale result can be mistaken for this one's.
  writeFileSync(files.configPath, `${JSON.stringify(config, null, 2)}\n`, { mode: PRIVATE_FILE_MODE });
  // Created empty (no metrics) and private, so a task that writes it in place keeps it 0600.
  touchPrivateFile(files.resultPath);
}

/**
 * The metrics a task wrote to LABSWEEP_RESULT_FILE: an empty or missing file means a task with
 * no metrics (a no-op or side-effect-only task); anything but a JSON object is an error.
 */
export function readResult(resultPath: string): { metrics: Record<string, unknown> } | { error: string } {
  let text: string;
  try {
    text = readFileSync(resultPath, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { metrics: {} };
    throw error;
  }
  if (text.trim() === "") return { metrics: {} };
  try {
    const value = JSON.parse(text) as unknown;
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      return { metrics: value as Record<string, unknown> };
    }
    return { error: `LABSWEEP_RESULT_FILE must hold a JSON object of metrics, got: ${text.slice(0, 200)}` };
  } catch (error) {
    return {
      error: `LABSWEEP_RESULT_FILE is not valid JSON (${(error as Error).message}): ${text.slice(0, 200)}`,
    };
  }
}
