import { join } from "node:path";

/**
 * The files of one attempt. Their one owner: the agent writes them and the coordinator reads
 * the log from the same place when the ledger recorded no path (an in-process agent).
 */
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
