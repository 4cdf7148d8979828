import type { Db } from "../ledger/db.js";
import { attemptContext } from "../ledger/reads/attempts.js";
import type { DeclaredArtifact } from "../protocol/artifacts.js";
import type { AttemptOutcome } from "../protocol/interfaces.js";
import { logFailedTask } from "../results/failedLog.js";

/** What an agent reports when an attempt ends, beyond the outcome itself. */
export interface FinishReport {
  outcome: AttemptOutcome;
  /** Last log lines, for failed_experiments.csv. */
  logTail?: string;
  /** A success's artifacts, as uploaded: recorded only if each is stored as its own. (Default: none) */
  artifacts?: DeclaredArtifact[];
}

/**
 * Appends a task that used up its retries (or its losses) to failed_experiments.csv. `error`:
 * why it failed, when that is not the report's own error.
 */
export async function logFinalFailure(
  db: Db,
  stateDir: string,
  attemptId: number,
  report: FinishReport,
  options: { at: number; error?: string },
): Promise<void> {
  const row = await attemptContext(db, attemptId);
  if (!row) return;
  const outcome = report.outcome;
  await logFailedTask(stateDir, {
    at: new Date(options.at),
    taskId: row.task_id,
    phases: (row.phases ?? "").split(",").filter(Boolean),
    params: JSON.parse(row.params_json),
    attempt: row.number,
    exitCode: ("exitCode" in outcome ? outcome.exitCode : null) ?? null,
    signal: ("signal" in outcome ? outcome.signal : null) ?? null,
    error: options.error ?? ("error" in outcome ? outcome.error : ""),
    logTail: report.logTail ?? "",
  });
}
