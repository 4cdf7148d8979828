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
import type { Running } from "./occupancy.js";
import { killedBySigkill, oomError, oomSignalOf } from "./outOfMemory.js";
import { logTail, type ProcessExit } from "./runProcess.js";
import { formatBytes, RESULT_LIMIT_BYTES, readResult } from "./taskFiles.js";

/**
 * How the attempt ended; a result file that cannot be read (its permissions, a directory in its
 * place) fails the attempt rather than leave its slot taken and its report unsent. A stop at the
 * agent's shutdown that left something in the task's checkpoint dir is a preemption; with the
 * log's path, a failure that ran out of memory is told as such (`oom`).
 */
export function settledOutcome(
  exit: ProcessExit,
  resultPath: string,
  policy: Pick<RunPolicy, "timeoutMs" | "hangTimeoutMs">,
  where: { checkpointDir?: string; logPath?: string } = {},
): AttemptOutcome {
  const context: AttemptContext = { timeoutMs: policy.timeoutMs, hangTimeoutMs: policy.hangTimeoutMs };
  if (where.checkpointDir !== undefined) context.checkpointDir = where.checkpointDir;
  try {
    const outcome = outcomeOf(exit, resultPath, context);
    return outcome.kind === "failed" && where.logPath !== undefined
      ? outOfMemory(outcome, exit, where.logPath)
      : outcome;
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

/**
 * The outcome a running task's report carries, with its usage on a success and its log's tail
 * otherwise. A task the coordinator took back is interrupted, whatever its process did, unless
 * it succeeded (a late success is still taken while the task has no result).
 */
export function finalOutcome(
  task: Running,
  exit: ProcessExit,
  paths: { resultPath: string; logPath: string; checkpointDir: string },
): { outcome: AttemptOutcome; tail: string | undefined } {
  const where = { checkpointDir: paths.checkpointDir, logPath: paths.logPath };
  let outcome = settledOutcome(exit, paths.resultPath, task.lease.task.policy, where);
  if (task.abandoned && outcome.kind !== "succeeded") {
    const error = "stopped: the coordinator no longer assigns it to this agent";
    outcome = { kind: "interrupted", error, exitCode: exit.exitCode, signal: exit.signal };
  }
  const usage = task.sampler?.stop();
  if (outcome.kind === "succeeded" && usage) outcome.usage = usage;
  return { outcome, tail: outcome.kind === "succeeded" ? undefined : readableTail(paths.logPath) };
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
    // Its agent was sent SIGTERM (a scheduler's time limit or preemption): preempted, whatever
    // it saved. A user's Ctrl-C is preempted too when a checkpoint is there to go on from; else
    // it starts over: interrupted, as before checkpoints. Neither spends a retry.
    if (exit.stopReason === "preempt") {
      const error =
        "preempted: its agent was sent SIGTERM (a time limit or preemption); the next attempt resumes from its checkpoint dir";
      return { kind: "preempted", error, exitCode, signal };
    }
    if (exit.stopReason === "time_limit") {
      const error =
        "preempted: its agent's SLURM job reached its time limit; the next attempt resumes from its checkpoint dir";
      return { kind: "preempted", error, exitCode, signal };
    }
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

type Failure = Extract<AttemptOutcome, { kind: "failed" | "timeout" | "hung" }>;

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
