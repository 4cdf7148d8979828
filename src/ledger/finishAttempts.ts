import type { DeclaredArtifact } from "../protocol/artifacts.js";
import type { AttemptOutcome } from "../protocol/interfaces.js";
import type { Db } from "./db.js";
import { type HeldArtifact, storedArtifactsOf, unheldArtifacts } from "./finishArtifacts.js";
import {
  type AttemptEnd,
  applyFinish,
  decideFinish,
  type EndingAttempt,
  type FinishResult,
  type TaskChange,
} from "./finishAttempt.js";
import { ATTEMPT_COLUMNS, type AttemptColumns, attemptOf, readEnding } from "./readEnding.js";
import type { ArtifactRow } from "./reads/artifacts.js";
import { oweRowsSql } from "./resultRows.js";
import type { TaskRow } from "./rows.js";

/** Columns finishAttempts writes back to a task: every one a TaskChange may hold. */
const WRITTEN_TASK_COLUMNS = [
  "state",
  "attempt_id",
  "attempts",
  "losses",
  "not_before",
  "result_json",
  "wall_seconds",
  "host",
  "gpu_ids",
  "finished_at",
  "origin",
  "usage_json",
  "oom_value",
  "oom_retries",
  "git_commit",
  "git_dirty",
  "git_diff_sha256",
] as const;
// A column added to TaskChange but not written back here fails to compile.
const everyColumnWritten: [Exclude<keyof TaskChange, (typeof WRITTEN_TASK_COLUMNS)[number]>] extends [never]
  ? true
  : never = true;
void everyColumnWritten;

type BatchRow = TaskRow & AttemptColumns & { usage_json: string | null };

/** A report in a batch. With `worker`, it is refused unless the attempt is that worker's. */
export interface FinishItem {
  attemptId: number;
  outcome: AttemptOutcome;
  worker?: string;
  /** A success's artifacts, as its report declares them (see decideFinish). (Default: none) */
  artifacts?: readonly DeclaredArtifact[];
}

/** A report refused without effect: no such attempt, or another worker's. */
export interface FinishRefusal {
  refused: "unknown" | "foreign";
}

/**
 * finishAttempt for a batch of reports (one agent's), in one transaction, with the same results
 * as finishing them one by one in order. On PostgreSQL that is two statements whatever the
 * batch's size, not seven per report: one reads every attempt with its task, locking both (in
 * task id order, so two batches never wait for each other in a cycle); the decisions are made
 * here, each on the rows as the reports before it left them; one statement writes them all.
 * An unknown attempt throws, unless the item names a worker: then it is refused, like another
 * worker's attempt.
 */
export async function finishAttempts(
  db: Db,
  items: readonly FinishItem[],
  now: number,
): Promise<Array<FinishResult | FinishRefusal>> {
  if (db.dialect !== "postgres") return finishOneByOne(db, items, now);
  return db.transaction(async (tx) => {
    const attempts = await lockBatch(tx, items);
    const batch = decideBatch(attempts, items, await storedForBatch(tx, attempts, items), now);
    if (batch.ended.size > 0) attachDiscarded(batch, await writeBatch(tx, batch, now));
    return batch.results;
  });
}

/** SQLite: finishAttempt for each report in turn, in one transaction. */
function finishOneByOne(
  db: Db,
  items: readonly FinishItem[],
  now: number,
): Promise<Array<FinishResult | FinishRefusal>> {
  return db.transaction(async (tx) => {
    const results: Array<FinishResult | FinishRefusal> = [];
    for (const { attemptId, outcome, worker, artifacts } of items) {
      const ending = await readEnding(tx, attemptId);
      if (worker !== undefined && ending?.attempt.worker !== worker) {
        results.push({ refused: ending ? "foreign" : "unknown" });
        continue;
      }
      if (!ending) throw new Error(`unknown attempt ${attemptId}`);
      results.push(await applyFinish(tx, ending.attempt, ending.task, outcome, now, artifacts ?? []));
    }
    return results;
  });
}

type BatchAttempt = EndingAttempt & { worker: string; task: BatchRow };

/** Reads every reported attempt with its task, locking both, keyed by attempt id. */
async function lockBatch(tx: Db, items: readonly FinishItem[]): Promise<Map<number, BatchAttempt>> {
  // Locking the attempt rows too makes a wait for a task's lock end with both rows as the
  // other transaction left them, as finishAttempt's second read does.
  const rows = await tx.all<BatchRow>(
    `SELECT t.*, f.policy_json, ${ATTEMPT_COLUMNS}
       FROM attempts a JOIN tasks t ON t.id = a.task_id JOIN phases f ON f.name = t.phase
      WHERE a.id = ANY($1::bigint[])
      ORDER BY t.id, a.id FOR UPDATE OF t, a`,
    [items.map((item) => item.attemptId)],
  );
  // Attempts of one task share one row object, so a decision sees what an earlier one changed.
  const tasks = new Map<number, BatchRow>();
  const attempts = new Map<number, BatchAttempt>();
  for (const row of rows) {
    if (!tasks.has(row.id)) tasks.set(row.id, row);
    attempts.set(row.a_id, { ...attemptOf(row), task: tasks.get(row.id) as BatchRow });
  }
  return attempts;
}

/** What a batch's decisions leave to write, and each report's answer. */
interface BatchDecisions {
  results: Array<FinishResult | FinishRefusal>;
  ended: Map<number, AttemptEnd>;
  moved: Set<BatchRow>;
  owing: Set<number>;
  events: Array<{ kind: string; taskId: number; detail: string }>;
  /** Per task that succeeded: the attempt whose success it is, and its report's answer. */
  succeeded: Map<number, { attemptId: number; result: FinishResult }>;
}

/**
 * The artifacts stored for the tasks of reports that declare some, by task: read only when a
 * report does (a lease never carries one: reports with artifacts go on their own).
 */
async function storedForBatch(
  tx: Db,
  attempts: Map<number, BatchAttempt>,
  items: readonly FinishItem[],
): Promise<Map<number, HeldArtifact[]>> {
  const byTask = new Map<number, HeldArtifact[]>();
  const taskIds = items.flatMap((item) => {
    const taskId = attempts.get(item.attemptId)?.task.id;
    return item.artifacts?.length && taskId !== undefined ? [taskId] : [];
  });
  if (taskIds.length === 0) return byTask;
  for (const row of await storedArtifactsOf(tx, taskIds))
    byTask.set(row.task_id, [...(byTask.get(row.task_id) ?? []), row]);
  return byTask;
}

/** Each success's answer names the other attempts' artifact rows its write removed. */
function attachDiscarded(batch: BatchDecisions, discarded: ArtifactRow[]): void {
  for (const row of discarded) {
    const winner = batch.succeeded.get(row.task_id);
    if (winner) winner.result.discarded = [...(winner.result.discarded ?? []), row];
  }
}

/** decideFinish for each report in order, each on the rows as the reports before it left them. */
function decideBatch(
  attempts: Map<number, BatchAttempt>,
  items: readonly FinishItem[],
  stored: Map<number, HeldArtifact[]>,
  now: number,
): BatchDecisions {
  const batch: BatchDecisions = {
    results: [],
    ended: new Map(),
    moved: new Set(),
    owing: new Set(),
    events: [],
    succeeded: new Map(),
  };
  batch.results = items.map(({ attemptId, outcome, worker, artifacts }): FinishResult | FinishRefusal => {
    const attempt = attempts.get(attemptId);
    if (worker !== undefined && attempt?.worker !== worker)
      return { refused: attempt ? "foreign" : "unknown" };
    if (!attempt) throw new Error(`unknown attempt ${attemptId}`);
    const unheld =
      outcome.kind === "succeeded" && artifacts?.length
        ? unheldArtifacts(attemptId, artifacts, stored.get(attempt.task.id) ?? [])
        : null;
    const decision = decideFinish(attempt, attempt.task, outcome, now, unheld);
    if (decision.attempt) {
      batch.ended.set(attemptId, decision.attempt);
      attempt.ended_at = now;
      attempt.outcome = decision.attempt.outcome;
    }
    if (decision.task) {
      Object.assign(attempt.task, decision.task);
      batch.moved.add(attempt.task);
    }
    if (decision.oweRows) batch.owing.add(attempt.task.id);
    if (decision.result.taskState === "succeeded")
      batch.succeeded.set(attempt.task.id, { attemptId, result: decision.result });
    if (decision.event)
      batch.events.push({
        kind: decision.event.kind,
        taskId: attempt.task.id,
        detail: JSON.stringify(decision.event.detail),
      });
    return decision.result;
  });
  return batch;
}

/**
 * One statement writes every decision of the batch, and removes the artifact rows of other
 * attempts of each task that succeeded, returning them.
 */
async function writeBatch(
  tx: Db,
  { ended, moved, owing, events, succeeded }: BatchDecisions,
  now: number,
): Promise<ArtifactRow[]> {
  const written = [...moved];
  return tx.all<ArtifactRow>(FINISH_BATCH_SQL, [
    now,
    [...ended.keys()],
    [...ended.values()].map((end) => end.outcome),
    [...ended.values()].map((end) => end.exit_code),
    [...ended.values()].map((end) => end.signal),
    [...ended.values()].map((end) => end.error),
    [...ended.values()].map((end) => end.git_commit),
    [...ended.values()].map((end) => end.git_dirty),
    [...ended.values()].map((end) => end.git_diff_sha256),
    written.map((task) => task.id),
    ...WRITTEN_TASK_COLUMNS.map((column) => written.map((task) => task[column])),
    [...owing],
    events.map((event) => event.kind),
    events.map((event) => event.taskId),
    events.map((event) => event.detail),
    [...succeeded.keys()],
    [...succeeded.values()].map((winner) => winner.attemptId),
  ]);
}

/**
 * finishAttempts' write on PostgreSQL: attempts' ends, tasks' new columns (whole, as decided),
 * owed result rows and events, each from parallel arrays; last, the artifact rows of the other
 * attempts of tasks that succeeded go, and are returned. Data-modifying CTEs all run, in one
 * statement that is its own round trip.
 */
const FINISH_BATCH_SQL = `WITH ended AS (
  UPDATE attempts SET ended_at = $1, outcome = e.outcome, exit_code = e.exit_code, signal = e.signal, error = e.error,
         git_commit = e.git_commit, git_dirty = e.git_dirty, git_diff_sha256 = e.git_diff_sha256
    FROM unnest($2::bigint[], $3::text[], $4::integer[], $5::text[], $6::text[], $7::text[], $8::integer[], $9::text[])
      AS e(id, outcome, exit_code, signal, error, git_commit, git_dirty, git_diff_sha256)
   WHERE attempts.id = e.id
), moved AS (
  UPDATE tasks SET state = m.state, attempt_id = m.attempt_id, attempts = m.attempts, losses = m.losses,
         not_before = m.not_before, result_json = m.result_json, wall_seconds = m.wall_seconds, host = m.host,
         gpu_ids = m.gpu_ids, finished_at = m.finished_at, origin = m.origin, usage_json = m.usage_json,
         oom_value = m.oom_value, oom_retries = m.oom_retries,
         git_commit = m.git_commit, git_dirty = m.git_dirty, git_diff_sha256 = m.git_diff_sha256
    FROM unnest($10::bigint[], $11::text[], $12::bigint[], $13::integer[], $14::integer[], $15::bigint[],
                $16::text[], $17::float8[], $18::text[], $19::text[], $20::bigint[], $21::text[], $22::text[],
                $23::float8[], $24::integer[], $25::text[], $26::integer[], $27::text[])
      AS m(id, state, attempt_id, attempts, losses, not_before, result_json, wall_seconds, host, gpu_ids,
           finished_at, origin, usage_json, oom_value, oom_retries, git_commit, git_dirty, git_diff_sha256)
   WHERE tasks.id = m.id
), owed AS (
  ${oweRowsSql("p.task_id = ANY($28::bigint[])")}
), logged AS (
  INSERT INTO events (at, kind, task_id, detail)
  SELECT $1, v.kind, v.task_id, v.detail
    FROM unnest($29::text[], $30::bigint[], $31::text[]) WITH ORDINALITY AS v(kind, task_id, detail, n)
   ORDER BY v.n
)
DELETE FROM artifacts r
 USING unnest($32::bigint[], $33::bigint[]) AS w(task_id, attempt_id)
 WHERE r.task_id = w.task_id AND r.attempt_id <> w.attempt_id
RETURNING r.*`;
