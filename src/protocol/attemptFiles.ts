import { join } from "node:path";

/**
 * The files of one attempt. Their one owner: the agent writes them and the coordinator reads
 * the log from the same place when the ledger recorded no path (an in-process agent).
 */
export interface AttemptFiles {
  dir: string;
  logPath: string;
  resultPath: string;
  /** Append-only JSON lines the task writes while it runs (LABSWEEP_EVENTS_FILE): live reports. */
  eventsPath: string;
  /** Created by the agent when it asks the task to stop (LABSWEEP_STOP_FILE). */
  stopPath: string;
}

/**
 * Where one attempt's log, result, events and stop marker live: `<state>/tasks/<id>/`. Only the
 * log is made for every attempt (by the launcher); the task makes its result and events files
 * itself, if it writes any, and the agent the stop file on a stop.
 */
export function attemptFiles(stateDir: string, taskId: number, attemptNumber: number): AttemptFiles {
  const dir = join(stateDir, "tasks", String(taskId));
  return {
    dir,
    logPath: join(dir, `attempt-${attemptNumber}.log`),
    resultPath: join(dir, `attempt-${attemptNumber}.result.json`),
    eventsPath: join(dir, `attempt-${attemptNumber}.events.jsonl`),
    stopPath: join(dir, `attempt-${attemptNumber}.stop`),
  };
}
