import { join } from "node:path";
import { tightenFile } from "../files/privateFiles.js";
import { appendCsvRows } from "./csvFile.js";

export const FAILED_FILE = "failed_experiments.csv";

const HEADER = [
  "timestamp",
  "task_id",
  "phases",
  "params",
  "attempt",
  "exit_code",
  "signal",
  "error",
  "last_log_lines",
];

export interface FailedTask {
  at: Date;
  taskId: number;
  phases: string[];
  params: unknown;
  attempt: number;
  exitCode: number | null;
  signal: string | null;
  error: string;
  logTail: string;
}

/** Appends a task that used up its retries to `failed_experiments.csv` in the state dir. */
export async function logFailedTask(stateDir: string, failed: FailedTask): Promise<void> {
  await appendCsvRows(join(stateDir, FAILED_FILE), HEADER, [
    [
      failed.at.toISOString(),
      String(failed.taskId),
      failed.phases.join(";"),
      JSON.stringify(failed.params),
      String(failed.attempt),
      failed.exitCode === null ? "" : String(failed.exitCode),
      failed.signal ?? "",
      failed.error,
      failed.logTail,
    ],
  ]);
  // In the state dir: the owner's alone, like the ledger (commands and log tails can hold secrets).
  tightenFile(join(stateDir, FAILED_FILE));
}
