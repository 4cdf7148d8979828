/**
 * What an attempt's report says: how its process ended (its result file read), and the failure
 * that replaces a success the coordinator will not take.
 */
import type { FinishRequest } from "../protocol/http.js";
import type { AttemptOutcome } from "../protocol/interfaces.js";
import type { HttpError } from "./httpClient.js";
import { killedBySigkill, oomError, oomSignalOf } from "./outOfMemory.js";
import { logTail, type ProcessExit } from "./runProcess.js";
import { formatBytes, RESULT_LIMIT_BYTES, readResult } from "./taskFiles.js";

/**
 * How the attempt ended; a result file that cannot be read (its permissions, a directory in its
 * place) fails the attempt rather than leave its slot taken and its report unsent. With the
 * log's path, a failure that ran out of memory is told as such (`oom`).
 */
export function settledOutcome(
  exit: ProcessExit,
  resultPath: string,
  timeoutMs: number | null,
  logPath?: string,
): AttemptOutcome {
  try {
    const outcome = outcomeOf(exit, resultPath, timeoutMs);
    return outcome.kind === "failed" && logPath !== undefined ? outOfMemory(outcome, exit, logPath) : outcome;
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    const { exitCode, signal, wallSeconds } = exit;
    return {
      kind: "failed",
      exitCode,
      signal,
      error: `cannot read LABSWEEP_RESULT_FILE: ${why}`,
      wallSeconds,
    };
  }
}

/** The log's last lines for the report; none when the log cannot be read. */
export function readableTail(logPath: string): string | undefined {
  try {
    return logTail(logPath, 20);
  } catch {
    // Only a courtesy for failed_experiments.csv: the report matters, not its tail.
    return undefined;
  }
}

function outcomeOf(exit: ProcessExit, resultPath: string, timeoutMs: number | null): AttemptOutcome {
  const wallSeconds = exit.wallSeconds;
  if (exit.stopped && !exit.timedOut) {
    return {
      kind: "interrupted",
      error: "stopped by the user",
      exitCode: exit.exitCode,
      signal: exit.signal,
    };
  }
  if (exit.timedOut) {
    return {
      kind: "timeout",
      exitCode: exit.exitCode,
      signal: exit.signal,
      error: `timed out after ${((timeoutMs ?? 0) / 1000).toFixed(1)} s`,
      wallSeconds,
    };
  }
  if (exit.exitCode === 0) {
    const result = readResult(resultPath);
    if ("metrics" in result) return { kind: "succeeded", metrics: result.metrics, wallSeconds };
    return { kind: "failed", exitCode: 0, signal: null, error: result.error, wallSeconds };
  }
  const error = exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.exitCode}`;
  return { kind: "failed", exitCode: exit.exitCode, signal: exit.signal, error, wallSeconds };
}

type Failure = Extract<AttemptOutcome, { kind: "failed" | "timeout" }>;

/**
 * A failure as `oom` when it ran out of memory. A SIGKILL the agent did not send with no OOM
 * count to read is only likely the OOM killer: it stays a failure, saying so.
 */
function outOfMemory(failure: Failure, exit: ProcessExit, logPath: string): AttemptOutcome {
  if (failure.exitCode === 0) return failure; // a bad result file, not a crash
  const oomKills = exit.oomKills ?? null;
  const signal = oomSignalOf(exit, logPath, oomKills);
  if (signal !== null) {
    const oom = signal.source === "log" ? signal.message : "kernel";
    return { ...failure, kind: "oom", error: oomError(signal), oom };
  }
  if (killedBySigkill(exit) && oomKills === null)
    return {
      ...failure,
      error: `${failure.error} (likely the kernel's OOM killer; no OOM kill count could be read)`,
    };
  return failure;
}

/**
 * A success whose report the coordinator refuses for what it holds — too large (413), or
 * malformed (400) — as a failure it will take: the attempt must end, or its lease would run
 * out, the task be requeued as lost and run again, each time refused the same way. Null for
 * any other report or refusal (an unknown attempt, another agent's: no report of it would do).
 */
export function refusedAsFailure(request: FinishRequest, refusal: HttpError): FinishRequest | null {
  const outcome = request.outcome;
  if (outcome.kind !== "succeeded" || (refusal.status !== 413 && refusal.status !== 400)) return null;
  const size = formatBytes(Buffer.byteLength(JSON.stringify(outcome.metrics)));
  const error =
    refusal.status === 413
      ? `the result (${size} of JSON) is more than the coordinator takes (413: ${refusal.detail}); results may be up to ${formatBytes(RESULT_LIMIT_BYTES)}, less where a coordinator's request limit is lower`
      : `the coordinator refused the task's result (400: ${refusal.detail})`;
  return {
    ...request,
    outcome: { kind: "failed", exitCode: 0, signal: null, error, wallSeconds: outcome.wallSeconds },
  };
}
