import type { DeclaredArtifact } from "../protocol/artifacts.js";
import type { AttemptOutcome, GitState, TaskState } from "../protocol/interfaces.js";
import { nextOomValue } from "../sweep/oomScaling.js";
import { DEFAULT_MAX_LOST, type Params, type RunPolicy } from "../sweep/types.js";
import type { Db } from "./db.js";
import { discardOtherArtifacts, storedArtifacts, unheldArtifacts } from "./finishArtifacts.js";
import { type Ending, readEnding } from "./readEnding.js";
import type { ArtifactRow } from "./reads/artifacts.js";
import { recordEvent } from "./recordEvent.js";
import { oweRowsSql } from "./resultRows.js";
import type { AttemptRow, TaskRow } from "./rows.js";

export interface FinishResult {
  /** What became of the task. */
  taskState: "succeeded" | "pending" | "failed" | "ignored";
  /** Set when a failure used up the last retry: the caller logs it to failed_experiments.csv. */
  finalFailure: boolean;
  /** When the task may run again, for a retried failure. */
  retryAt: number | null;
  /** Why the task failed, when that is not the report's own error (it was lost too often). */
  error?: string;
  /**
   * A success was recorded: the artifact rows of the task's other attempts it removed, whose
   * files the coordinator deletes after the commit. (Default: none)
   */
  discarded?: ArtifactRow[];
}

const MAX_BACKOFF_MS = 10 * 60_000;

/** The attempt columns a decision reads. */
export type EndingAttempt = Pick<AttemptRow, "id" | "host" | "gpu_ids" | "ended_at" | "outcome">;
/** The task columns a decision reads (with its declaring phase's policy). */
export type EndingTask = Pick<
  TaskRow,
  | "id"
  | "state"
  | "attempt_id"
  | "attempts"
  | "losses"
  | "policy_json"
  | "params_json"
  | "oom_value"
  | "oom_retries"
>;

/** The task columns an attempt's end may change, with their new values. */
export interface TaskChange {
  state: TaskState;
  attempt_id: null;
  attempts?: number;
  losses?: number;
  not_before?: number;
  result_json?: string;
  wall_seconds?: number;
  host?: string | null;
  gpu_ids?: string | null;
  finished_at?: number;
  origin?: string;
  usage_json?: string | null;
  oom_value?: number | null;
  oom_retries?: number;
  git_commit?: string | null;
  git_dirty?: number | null;
  git_diff_sha256?: string | null;
}

/** The provenance columns of an attempt, and of a task (its successful attempt's). */
export interface GitColumns {
  git_commit: string | null;
  /** 0 or 1; null without a commit. */
  git_dirty: number | null;
  git_diff_sha256: string | null;
}

/** How an attempt's end is recorded on the attempt, with the provenance of the code it ran. */
export interface AttemptEnd extends GitColumns {
  outcome: AttemptOutcome["kind"];
  exit_code: number | null;
  signal: string | null;
  error: string | null;
}

/**
 * What one report does to the ledger, decided from the attempt's and task's rows alone: the one
 * place finishing rules live, whether reports are applied one at a time (finishAttempt) or a
 * batch in one statement (finishAttempts on PostgreSQL).
 */
export interface FinishDecision {
  result: FinishResult;
  /** Null when the attempt had ended already: the report changes nothing at all. */
  attempt: AttemptEnd | null;
  task: TaskChange | null;
  /** A success: the task owes its result rows. */
  oweRows: boolean;
  event: { kind: string; detail: unknown } | null;
}

const ignored = (): FinishResult => ({ taskState: "ignored", finalFailure: false, retryAt: null });

/**
 * Fencing: only the task's current attempt may change it, except that a late success is still
 * accepted while the task has no result. A stale report still records how its attempt ended.
 * `unheld`: why a success's declared artifacts are not all stored as its own (finishArtifacts.ts),
 * null when they are: such a success is not recorded (see decideUnheld).
 */
export function decideFinish(
  attempt: EndingAttempt,
  task: EndingTask,
  outcome: AttemptOutcome,
  now: number,
  unheld: string | null = null,
): FinishDecision {
  if (attempt.ended_at !== null && attempt.outcome !== "lost")
    return { result: ignored(), attempt: null, task: null, oweRows: false, event: null };
  const current = task.attempt_id === attempt.id && task.state === "running";
  // A cancelled task wants no result: its late success is ignored like any stale report.
  const lateSuccess =
    outcome.kind === "succeeded" && task.state !== "succeeded" && task.state !== "cancelled";
  const end: AttemptEnd = {
    outcome: outcome.kind,
    exit_code: ("exitCode" in outcome ? outcome.exitCode : null) ?? null,
    signal: ("signal" in outcome ? outcome.signal : null) ?? null,
    error: "error" in outcome ? outcome.error : null,
    ...gitColumns(outcome.git),
  };
  if (!current && !lateSuccess)
    return { result: ignored(), attempt: end, task: null, oweRows: false, event: null };

  if (outcome.kind === "succeeded")
    return unheld === null
      ? decideSuccess(attempt, end, outcome, now)
      : decideUnheld(attempt, end, current, unheld);
  if (outcome.kind === "lost") return decideLoss(attempt, task, end, outcome.error, now);
  // Preempted (its agent shut down; a checkpoint to resume from) is an interruption by another
  // name: pending at once, no retry or backoff spent; its own event kind tells them apart.
  if (outcome.kind === "interrupted" || outcome.kind === "preempted") {
    return {
      result: { taskState: "pending", finalFailure: false, retryAt: null },
      attempt: end,
      task: { state: "pending", attempt_id: null, not_before: 0 },
      oweRows: false,
      event: { kind: `task_${outcome.kind}`, detail: { attempt: attempt.id, why: outcome.error } },
    };
  }
  const oom = outcome.kind === "oom" ? oomStep(task) : null;
  if (oom?.to != null) return decideOomRetry(attempt, task, end, { ...oom, to: oom.to });
  // At on_oom's min the end is a failure like any other, saying why it was not shrunk again.
  const error = oom
    ? `${outcome.error} with ${oom.param} ${oom.from}: on_oom shrinks it no further`
    : outcome.error;
  if (oom) end.error = error;
  const { retries, backoffMs } = JSON.parse(task.policy_json) as { retries: number; backoffMs: number };
  const spent = task.attempts + 1;
  if (spent <= retries) {
    const retryAt = now + Math.min(MAX_BACKOFF_MS, backoffMs * 2 ** (spent - 1));
    return {
      result: { taskState: "pending", finalFailure: false, retryAt },
      attempt: end,
      task: { state: "pending", attempt_id: null, attempts: spent, not_before: retryAt },
      oweRows: false,
      event: { kind: "task_retry", detail: { attempt: attempt.id, retryAt, error } },
    };
  }
  return {
    result: { taskState: "failed", finalFailure: true, retryAt: null, ...(oom ? { error } : {}) },
    attempt: end,
    task: { state: "failed", attempt_id: null, attempts: spent, finished_at: now },
    oweRows: false,
    event: { kind: "task_failed", detail: { attempt: attempt.id, error } },
  };
}

/** An outcome's provenance as columns: all null when it carries none. */
export function gitColumns(git: GitState | undefined): GitColumns {
  if (!git) return { git_commit: null, git_dirty: null, git_diff_sha256: null };
  return { git_commit: git.commit, git_dirty: git.dirty ? 1 : 0, git_diff_sha256: git.diffSha256 };
}

/**
 * A success: its metrics are the task's result, with its host, GPUs, usage and provenance, and it
 * owes one row per output dir.
 */
function decideSuccess(
  attempt: EndingAttempt,
  end: AttemptEnd,
  outcome: Extract<AttemptOutcome, { kind: "succeeded" }>,
  now: number,
): FinishDecision {
  return {
    result: { taskState: "succeeded", finalFailure: false, retryAt: null },
    attempt: end,
    task: {
      state: "succeeded",
      attempt_id: null,
      result_json: JSON.stringify(outcome.metrics),
      wall_seconds: outcome.wallSeconds,
      host: attempt.host,
      gpu_ids: attempt.gpu_ids,
      finished_at: now,
      origin: "run",
      usage_json: outcome.usage ? JSON.stringify(outcome.usage) : null,
      git_commit: end.git_commit,
      git_dirty: end.git_dirty,
      git_diff_sha256: end.git_diff_sha256,
    },
    oweRows: true,
    event: { kind: "task_succeeded", detail: { attempt: attempt.id } },
  };
}

/**
 * A success whose files another attempt's upload superseded: recording it would put its result
 * beside another attempt's files. Its attempt's end says why, as an interruption — never as a
 * success, which would refuse every later upload of the task (supersedeArtifacts). A late one is
 * then ignored like any stale report; the current one requeues the task, no retry spent, so it
 * runs again cleanly.
 */
function decideUnheld(
  attempt: EndingAttempt,
  end: AttemptEnd,
  current: boolean,
  unheld: string,
): FinishDecision {
  const why = `it succeeded, but ${unheld}: its result is not recorded`;
  const interrupted: AttemptEnd = { ...end, outcome: "interrupted", error: why };
  if (!current) return { result: ignored(), attempt: interrupted, task: null, oweRows: false, event: null };
  return {
    result: { taskState: "pending", finalFailure: false, retryAt: null },
    attempt: interrupted,
    task: { state: "pending", attempt_id: null, not_before: 0 },
    oweRows: false,
    event: { kind: "task_interrupted", detail: { attempt: attempt.id, why } },
  };
}

/** Where a task's on_oom parameter stands after an attempt that ran out of memory. */
interface OomStep {
  param: string;
  /** The value the attempt ran with. */
  from: number;
  /** The next one; null when it cannot shrink further. */
  to: number | null;
}

/** Null when the task's phase has no on_oom (or its value is not a number, as in a hand-edited ledger). */
function oomStep(task: EndingTask): OomStep | null {
  const onOom = (JSON.parse(task.policy_json) as RunPolicy).onOom;
  if (!onOom) return null;
  const declared = (JSON.parse(task.params_json) as Params)[onOom.param];
  if (typeof declared !== "number") return null;
  const from = task.oom_value ?? declared;
  return { param: onOom.param, from, to: nextOomValue(onOom, declared, from, task.oom_retries ?? 0) };
}

/**
 * on_oom: an attempt that ran out of memory is retried at once with the parameter scaled,
 * spending no retry: a smaller batch is a new try, not the same one failing again.
 */
function decideOomRetry(
  attempt: EndingAttempt,
  task: EndingTask,
  end: AttemptEnd,
  step: OomStep & { to: number },
): FinishDecision {
  const oomRetries = (task.oom_retries ?? 0) + 1;
  const detail = { attempt: attempt.id, param: step.param, from: step.from, to: step.to, error: end.error };
  return {
    result: { taskState: "pending", finalFailure: false, retryAt: null },
    attempt: end,
    task: { state: "pending", attempt_id: null, not_before: 0, oom_value: step.to, oom_retries: oomRetries },
    oweRows: false,
    event: { kind: "task_oom_retry", detail },
  };
}

/**
 * The current attempt was lost with its worker: the task goes back to pending without spending
 * a retry (losing the worker is usually not the task's fault), until its `max_lost`-th loss — a
 * task that takes its agent or machine down every time must not be rerun for ever — which fails
 * it, saying why.
 */
function decideLoss(
  attempt: EndingAttempt,
  task: EndingTask,
  end: AttemptEnd,
  why: string,
  now: number,
): FinishDecision {
  const losses = (task.losses ?? 0) + 1;
  const maxLost = (JSON.parse(task.policy_json) as { maxLost?: number }).maxLost ?? DEFAULT_MAX_LOST;
  if (losses < maxLost) {
    return {
      result: { taskState: "pending", finalFailure: false, retryAt: null },
      attempt: end,
      task: { state: "pending", attempt_id: null, losses, not_before: 0 },
      oweRows: false,
      event: { kind: "task_lost", detail: { attempt: attempt.id, why } },
    };
  }
  const error = `lost ${losses} times: its agent died or stopped answering each time (max_lost ${maxLost}; last: ${why})`;
  return {
    result: { taskState: "failed", finalFailure: true, retryAt: null, error },
    attempt: { ...end, error },
    task: { state: "failed", attempt_id: null, losses, finished_at: now },
    oweRows: false,
    event: { kind: "task_failed", detail: { attempt: attempt.id, error } },
  };
}

/**
 * Records how an attempt ended and moves its task on: success stores the metrics and owes one
 * result row per output dir (the outbox the results writer drains); failure retries with
 * exponential backoff until `retries` is spent. See decideFinish for the fencing rules.
 */
export async function finishAttempt(
  db: Db,
  attemptId: number,
  outcome: AttemptOutcome,
  now: number,
  /** A success's artifacts, as its report declares them (see decideFinish). (Default: none) */
  artifacts: readonly DeclaredArtifact[] = [],
): Promise<FinishResult> {
  return db.transaction(async (tx) => {
    const ending = await readEnding(tx, attemptId);
    if (!ending) throw new Error(`unknown attempt ${attemptId}`);
    return applyFinish(tx, ending.attempt, ending.task, outcome, now, artifacts);
  });
}

/** finishAttempt's decision and writes, on the rows readEnding read, in the caller's transaction. */
export async function applyFinish(
  tx: Db,
  attempt: Ending["attempt"],
  task: TaskRow,
  outcome: AttemptOutcome,
  now: number,
  artifacts: readonly DeclaredArtifact[],
): Promise<FinishResult> {
  const attemptId = attempt.id;
  // The task's first attempt, and still its current one: no other attempt was ever opened (each
  // claim makes its attempt the current one), so none left artifacts to discard.
  const onlyAttempt = Number(attempt.number) === 1 && task.attempt_id === attemptId;
  const unheld =
    outcome.kind === "succeeded" && artifacts.length > 0
      ? unheldArtifacts(attemptId, artifacts, await storedArtifacts(tx, task.id))
      : null;
  const decision = decideFinish(attempt, task, outcome, now, unheld);
  if (decision.attempt) {
    const end = decision.attempt;
    await tx.run(
      `UPDATE attempts SET ended_at = $2, outcome = $3, exit_code = $4, signal = $5, error = $6,
              git_commit = $7, git_dirty = $8, git_diff_sha256 = $9
        WHERE id = $1`,
      [
        attemptId,
        now,
        end.outcome,
        end.exit_code,
        end.signal,
        end.error,
        end.git_commit,
        end.git_dirty,
        end.git_diff_sha256,
      ],
    );
  }
  if (decision.task) {
    // One text per kind of change (its set of columns), so each is prepared once.
    const columns = Object.keys(decision.task);
    await tx.run(
      `UPDATE tasks SET ${columns.map((column, i) => `${column} = $${i + 2}`).join(", ")} WHERE id = $1`,
      [task.id, ...Object.values(decision.task)],
    );
  }
  if (decision.oweRows) await oweResultRows(tx, task.id);
  if (decision.event) await recordEvent(tx, now, decision.event.kind, task.id, decision.event.detail);
  if (decision.result.taskState !== "succeeded" || onlyAttempt) return decision.result;
  const discarded = await discardOtherArtifacts(tx, task.id, attemptId);
  return discarded.length > 0 ? { ...decision.result, discarded } : decision.result;
}

/**
 * One row per output dir; where several phases put the task in one dir, the row carries the
 * first phase in declaration order.
 */
export async function oweResultRows(tx: Db, taskId: number): Promise<void> {
  await tx.run(oweRowsSql("p.task_id = $1"), [taskId]);
}
