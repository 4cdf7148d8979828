import type { Db } from "../ledger/db.js";
import type { FinishResult } from "../ledger/finishAttempt.js";
import type { FinishRefusal } from "../ledger/finishAttempts.js";
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

/** Appends a batch's final failures to failed_experiments.csv (see logFinalFailure). */
export async function logFinalFailures(
  db: Db,
  stateDir: string,
  items: ReadonlyArray<{ attemptId: number; report: FinishReport }>,
  results: ReadonlyArray<FinishResult | FinishRefusal>,
  at: number,
): Promise<void> {
  for (const [i, result] of results.entries()) {
    const item = items[i] as { attemptId: number; report: FinishReport };
    if ("finalFailure" in result && result.finalFailure)
      await logFinalFailure(db, stateDir, item.attemptId, item.report, { at, error: result.error });
  }
}

/** The reports of a batch that failed their tasks for good: why, and with what exit code. */
export function finalFailures(
  items: ReadonlyArray<{ attemptId: number; report: FinishReport }>,
  results: ReadonlyArray<FinishResult | FinishRefusal>,
): Array<{ attemptId: number; error: string; exitCode: number | null }> {
  return results.flatMap((result, i) => {
    if (!("finalFailure" in result) || !result.finalFailure) return [];
    const { attemptId, report } = items[i] as { attemptId: number; report: FinishReport };
    const outcome = report.outcome;
    const error = result.error ?? ("error" in outcome ? outcome.error : "");
    return [{ attemptId, error, exitCode: ("exitCode" in outcome ? outcome.exitCode : null) ?? null }];
  });
}
