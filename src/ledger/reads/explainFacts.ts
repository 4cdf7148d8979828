import type { TaskState } from "../../protocol/interfaces.js";
import type { Gate, RunPolicy } from "../../sweep/types.js";
import type { Db } from "../db.js";
import { indexedBy } from "../dialect.js";
import type { PhaseState } from "../evaluateGates.js";

/** A TASK as a user names it that names no task, or several: the command's one clear error. */
export class TaskRefError extends Error {
  override readonly name = "TaskRefError";
}

/**
 * The task a user means: all digits is a task id (as `status`, the dashboard and `plan --list`
 * show it); anything else is a signature or the start of one (`plan --list --json`), which must
 * name one task. Signatures carry no index (syncSweep's note): a prefix is a scan, fine for a
 * command a person types.
 */
export async function findTask(db: Db, ref: string): Promise<number> {
  const text = ref.trim();
  if (/^\d+$/.test(text)) {
    const row = await db.one<{ id: number }>("SELECT id FROM tasks WHERE id = $1", [Number(text)]);
    if (!row) throw new TaskRefError(`no task ${text} in this ledger`);
    return Number(row.id);
  }
  if (!/^[A-Za-z0-9_-]{4,64}$/.test(text))
    throw new TaskRefError(
      `"${text.slice(0, 80)}" is neither a task id (a number) nor a signature (4 or more of its characters)`,
    );
  // substr, not LIKE: signatures are base64url, whose case SQLite's LIKE would ignore.
  const rows = await db.all<{ id: number; signature: string }>(
    "SELECT id, signature FROM tasks WHERE substr(signature, 1, $2) = $1 ORDER BY id LIMIT 3",
    [text, text.length],
  );
  const [first] = rows;
  if (!first) throw new TaskRefError(`no task's signature starts with ${text}`);
  if (rows.length > 1)
    throw new TaskRefError(
      `${text} starts the signatures of several tasks (${rows
        .map((row) => row.id)
        .slice(0, 2)
        .join(", ")}${rows.length > 2 ? ", …" : ""}): give more of it, or the task id`,
    );
  return Number(first.id);
}

/** A phase a task is placed in, with its gate and what it waits for. */
export interface PhaseFacts {
  name: string;
  state: PhaseState;
  reason: string | null;
  paused: boolean;
  priority: number;
  after: string[];
  gate: Gate;
  /** The placement is still in a loaded config. */
  active: boolean;
}

/** How far a phase a gate waits for has come. */
export interface PhaseProgress {
  name: string;
  state: PhaseState;
  total: number;
  succeeded: number;
  failed: number;
  /** Succeeded, failed, blocked or cancelled: will not change any more. */
  settled: number;
}

export interface AttemptFacts {
  number: number;
  worker: string;
  host: string | null;
  startedAt: number;
  endedAt: number | null;
  outcome: string | null;
  error: string | null;
  exitCode: number | null;
  /** Null while a task leased ahead waits on its agent for a slot. */
  pid: number | null;
}

/** Everything `explain` judges a task by, read in one go. */
export interface ExplainFacts {
  id: number;
  signature: string;
  params: Record<string, unknown>;
  state: TaskState;
  /** The phase that declared it: its policy, priority and pause decide its claims. */
  phase: string;
  policy: RunPolicy;
  runnable: boolean;
  active: boolean;
  /** Retry backoff: not leased before this (epoch ms; 0: no backoff). */
  notBefore: number;
  /** Attempts that counted against its retries. */
  attempts: number;
  finishedAt: number | null;
  host: string | null;
  phases: PhaseFacts[];
  /** The phases its phases come after, with their progress. */
  upstream: PhaseProgress[];
  last: AttemptFacts | null;
  /** Claimable tasks leased before it: higher priority, or the same and a lower id. */
  ahead: number;
}

/** Reads what `explain` needs about task `id` (which must exist: see findTask). */
export async function explainFacts(db: Db, id: number, now: number): Promise<ExplainFacts> {
  const task = await db.one<Record<string, unknown>>(
    `SELECT t.id, t.signature, t.params_json, t.state, t.phase, t.runnable, t.active, t.not_before, t.attempts,
            t.finished_at, t.host, f.policy_json, f.priority
       FROM tasks t JOIN phases f ON f.name = t.phase WHERE t.id = $1`,
    [id],
  );
  if (!task) throw new TaskRefError(`no task ${id} in this ledger`);
  const phases = await placedPhases(db, id);
  const upstreamNames = [...new Set(phases.flatMap((phase) => phase.after))];
  const declaring = phases.find((phase) => phase.name === task.phase);
  return {
    id: Number(task.id),
    signature: String(task.signature),
    params: JSON.parse(String(task.params_json)) as Record<string, unknown>,
    state: task.state as TaskState,
    phase: String(task.phase),
    policy: JSON.parse(String(task.policy_json)) as RunPolicy,
    runnable: Number(task.runnable) === 1,
    active: Number(task.active) === 1,
    notBefore: Number(task.not_before),
    attempts: Number(task.attempts),
    finishedAt: task.finished_at == null ? null : Number(task.finished_at),
    host: (task.host as string | null) ?? null,
    phases,
    upstream: await Promise.all(upstreamNames.map((name) => progressOf(db, name))),
    last: await lastAttempt(db, id),
    ahead:
      task.state === "pending" && !declaring?.paused
        ? await claimableAhead(db, id, Number(task.priority), now)
        : 0,
  };
}

async function placedPhases(db: Db, id: number): Promise<PhaseFacts[]> {
  const rows = await db.all<{
    name: string;
    state: PhaseState;
    reason: string | null;
    paused: number;
    priority: number;
    after_json: string;
    gate_json: string;
    active: number;
  }>(
    `SELECT DISTINCT f.name, f.state, f.reason, f.paused, f.priority, f.after_json, f.gate_json, p.active, f.position
       FROM placements p JOIN phases f ON f.name = p.phase WHERE p.task_id = $1 ORDER BY f.position`,
    [id],
  );
  return rows.map((row) => ({
    name: row.name,
    state: row.state,
    reason: row.reason,
    paused: Number(row.paused) === 1,
    priority: Number(row.priority),
    after: JSON.parse(row.after_json) as string[],
    gate: JSON.parse(row.gate_json) as Gate,
    active: Number(row.active) === 1,
  }));
}

async function progressOf(db: Db, name: string): Promise<PhaseProgress> {
  const row = await db.one<{
    state: PhaseState | null;
    total: number;
    succeeded: number;
    failed: number;
    settled: number;
  }>(
    `SELECT (SELECT state FROM phases WHERE name = $1) AS state,
            count(*) AS total,
            count(CASE WHEN t.state = 'succeeded' THEN 1 END) AS succeeded,
            count(CASE WHEN t.state = 'failed' THEN 1 END) AS failed,
            count(CASE WHEN t.state IN ('succeeded', 'failed', 'blocked', 'cancelled') THEN 1 END) AS settled
       FROM placements p JOIN tasks t ON t.id = p.task_id
      WHERE p.phase = $1 AND p.active = 1`,
    [name],
  );
  return {
    name,
    state: row?.state ?? "waiting",
    total: Number(row?.total ?? 0),
    succeeded: Number(row?.succeeded ?? 0),
    failed: Number(row?.failed ?? 0),
    settled: Number(row?.settled ?? 0),
  };
}

async function lastAttempt(db: Db, id: number): Promise<AttemptFacts | null> {
  const row = await db.one<{
    number: number;
    worker: string;
    host: string | null;
    started_at: number;
    ended_at: number | null;
    outcome: string | null;
    error: string | null;
    exit_code: number | null;
    pid: number | null;
  }>(
    `SELECT number, worker, host, started_at, ended_at, outcome, error, exit_code, pid
       FROM attempts WHERE task_id = $1 ORDER BY number DESC LIMIT 1`,
    [id],
  );
  if (!row) return null;
  return {
    number: Number(row.number),
    worker: row.worker,
    host: row.host,
    startedAt: Number(row.started_at),
    endedAt: row.ended_at == null ? null : Number(row.ended_at),
    outcome: row.outcome,
    error: row.error,
    exitCode: row.exit_code == null ? null : Number(row.exit_code),
    pid: row.pid == null ? null : Number(row.pid),
  };
}

/**
 * Claimable tasks a claim takes before this one (claimTask's order: phases by priority, paused
 * ones skipped, then task id): what stands between it and the next free slot that fits it.
 */
async function claimableAhead(db: Db, id: number, priority: number, now: number): Promise<number> {
  const row = await db.one<{ n: number }>(
    `SELECT count(*) AS n FROM tasks t${indexedBy(db, "tasks_claimable")} JOIN phases f ON f.name = t.phase
      WHERE t.state = 'pending' AND t.runnable = 1 AND t.active = 1 AND t.not_before <= $1 AND f.paused = 0
        AND (f.priority > $2 OR (f.priority = $2 AND t.id < $3))`,
    [now, priority, id],
  );
  return Number(row?.n ?? 0);
}
