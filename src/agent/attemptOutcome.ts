/**
 * What an attempt's report says: how its process ended (its result file read), and the failure
 * that replaces a success the coordinator will not take.
 */
import { readdirSync } from "node:fs";
import type { FinishRequest } from "../protocol/http.js";
import type { AttemptOutcome } from "../protocol/interfaces.js";
import { formatDuration } from "../sweep/duration.js";
import type { RunPolicy } from "../sweep/types.js";
import type { HttpError } from "./httpClient.js";
import { logTail, type ProcessExit } from "./runProcess.js";
import { formatBytes, RESULT_LIMIT_BYTES, readResult } from "./taskFiles.js";

/**
 * How the attempt ended; a result file that cannot be read (its permissions, a directory in its
 * place) fails the attempt rather than leave its slot taken and its report unsent. A stop at the
 * agent's shutdown that left something in the task's checkpoint dir is a preemption.
 */
export function settledOutcome(
  exit: ProcessExit,
  resultPath: string,
  policy: Pick<RunPolicy, "timeoutMs" | "hangTimeoutMs">,
  checkpointDir?: string,
): AttemptOutcome {
  const context: AttemptContext = { timeoutMs: policy.timeoutMs, hangTimeoutMs: policy.hangTimeoutMs };
  if (checkpointDir !== undefined) context.checkpointDir = checkpointDir;
  try {
    return outcomeOf(exit, resultPath, context);
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

/** What an outcome's wording and kind depend on besides the process's exit. */
interface AttemptContext {
  timeoutMs: number | null;
  hangTimeoutMs?: number | undefined;
  checkpointDir?: string;
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

function outcomeOf(exit: ProcessExit, resultPath: string, context: AttemptContext): AttemptOutcome {
  const { wallSeconds, exitCode, signal } = exit;
  const timeoutMs = context.timeoutMs;
  if (exit.stopReason === "hang") {
    const silent = formatDuration(context.hangTimeoutMs ?? 0);
    return {
      kind: "hung",
      exitCode,
      signal,
      error: `hung: no output, report or GPU use for ${silent}`,
      wallSeconds,
    };
  }
  if (exit.stopped && !exit.timedOut) {
    // Stopped as its agent shut down (a scheduler's SIGTERM, Ctrl-C) with a checkpoint to go
    // on from: preempted. Without one it starts over: interrupted, as before checkpoints.
    if (exit.stopReason === "shutdown" && holdsFiles(context.checkpointDir)) {
      const error = "preempted: stopped as its agent shut down; the next attempt resumes from its checkpoint";
      return { kind: "preempted", error, exitCode, signal };
    }
    return { kind: "interrupted", error: "stopped by the user", exitCode, signal };
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

/** Whether a dir exists and holds anything. */
function holdsFiles(dir: string | undefined): boolean {
  if (dir === undefined) return false;
  try {
    return readdirSync(dir).length > 0;
  } catch {
    // Gone, unreadable, or its storage away: nothing this agent can say was saved, so the stop
    // is an interruption — the label only; either way the task is pending again, no retry spent.
    return false;
  }
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
