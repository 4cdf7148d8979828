import type { Lease } from "../protocol/interfaces.js";
import type { Placement, RunPolicy } from "../sweep/types.js";
import type { Db } from "./db.js";
import { forUpdate, indexedBy, sql } from "./dialect.js";
import { recordEvent } from "./recordEvent.js";
import { type TaskRow, taskRowsFrom, toTask } from "./rows.js";

export interface ClaimRequest {
  worker: string;
  host: string;
  now: number;
  /** Lease length; the holder must renew before it runs out. */
  leaseMs: number;
  /** Whether this worker's free capacity can run a task with this policy (resources, tags). */
  fits: (policy: RunPolicy) => { gpuIds: number[] } | null;
}

/**
 * How many claimable tasks to look at for one that fits before giving up for now: a few first
 * (in a uniform sweep the first fits, and reading 64 rows per claim was a tenth of a busy
 * coordinator's time), then further.
 */
export const CANDIDATES = { sqlite: [4, 64], postgres: [1, 64] };

/**
 * Hands the lowest-numbered claimable task that fits to a worker and opens an attempt for it,
 * in one transaction, so a task is never handed out twice. On PostgreSQL the chosen task is
 * locked with `FOR UPDATE … SKIP LOCKED`: concurrent claimers skip it rather than wait.
 */
export async function claimTask(db: Db, request: ClaimRequest): Promise<Lease | null> {
  return db.transaction(async (tx) => {
    const found = await firstFitting(tx, request);
    return found ? openAttempt(tx, request, found) : null;
  });
}

/** A claimable task chosen for a claim, and where it would run. */
export interface Fitting {
  row: TaskRow;
  placement: { gpuIds: number[] };
}

/**
 * Opens an attempt for a chosen task, marks the task running under it and logs the start, in
 * the caller's transaction.
 */
export async function openAttempt(
  tx: Db,
  request: ClaimRequest,
  { row, placement }: Fitting,
  /** Left empty for the caller to fill (claimTasks reads a lease's placements at once). */
  withPlacements = true,
): Promise<Lease> {
  const task = toTask(row);
  // The attempt's number is counted in the INSERT itself: one round trip fewer per claim.
  const attempt = (await tx.one<{ id: number; number: number }>(
    `INSERT INTO attempts (task_id, number, worker, host, gpu_ids, started_at, lease_expires)
     SELECT $1, count(*) + 1, $2, $3, $4, $5, $6 FROM attempts WHERE task_id = $1
     RETURNING id, number`,
    [
      task.id,
      request.worker,
      request.host,
      placement.gpuIds.join(","),
      request.now,
      request.now + request.leaseMs,
    ],
  )) as { id: number; number: number };
  const attemptId = attempt.id;
  const attemptNumber = Number(attempt.number);
  await tx.run("UPDATE tasks SET state = 'running', attempt_id = $2 WHERE id = $1", [task.id, attemptId]);
  await recordEvent(tx, request.now, "task_started", task.id, {
    attempt: attemptId,
    worker: request.worker,
    gpus: placement.gpuIds,
  });
  const placements = withPlacements
    ? await tx.all<Placement>(
        `SELECT p.phase, p.output_dir AS "outputDir" FROM placements p JOIN phases f ON f.name = p.phase
          WHERE p.task_id = $1 AND p.active = 1 ORDER BY f.position, p.output_dir`,
        [task.id],
      )
    : [];
  return {
    task: { ...task, state: "running" },
    attemptId,
    attemptNumber,
    gpuIds: placement.gpuIds,
    placements,
  };
}

/**
 * Up to `max` claimable tasks that fit, in claim order, read in one statement where they all
 * fit (SQLite: the transaction holds the write lock, so no one else claims them meanwhile).
 * Reading a few candidates anew for each claim was a sixth of a busy coordinator's time.
 */
export async function fittingTasks(tx: Db, request: ClaimRequest, max: number): Promise<Fitting[]> {
  // As many candidates as wanted first (in a uniform sweep they all fit), then further ones past
  // any that did not fit.
  return chooseFitting(tx, request, max, [max, CANDIDATES.sqlite[1] as number]);
}

/**
 * The first claimable task that fits the request, locked for this transaction, and where it
 * would run. On PostgreSQL the candidates are read and locked in one statement that skips rows
 * other claimers hold, so concurrent claimers (requests of one coordinator, or replicas) take
 * disjoint tasks instead of all reaching for the first few; on SQLite the transaction holds the
 * database's write lock already. PostgreSQL locks every candidate it reads: one at a time
 * first, so a claimer holds no more than it takes and concurrent claimers each get the next.
 */
async function firstFitting(tx: Db, request: ClaimRequest): Promise<Fitting | null> {
  return (await chooseFitting(tx, request, 1, CANDIDATES[tx.dialect]))[0] ?? null;
}

/**
 * Claimable tasks that fit, up to `want`, in claim order: phases by priority (highest first),
 * paused phases skipped, and within one priority the lowest task id first. Round i reads
 * `limits[i]` more candidates per phase; `fits` is asked about each in order (it may count each
 * placement against the capacity left).
 */
async function chooseFitting(
  tx: Db,
  request: ClaimRequest,
  want: number,
  limits: readonly number[],
): Promise<Fitting[]> {
  const chosen: Fitting[] = [];
  for (const group of await claimGroups(tx)) {
    const cursors = group.map((phase) => ({ phase, after: 0, more: true }));
    for (const limit of limits) {
      const rows: TaskRow[] = [];
      for (const cursor of cursors) {
        if (!cursor.more) continue;
        const found = await candidates(tx, request, cursor.phase, cursor.after, limit);
        // Fewer rows than asked for: this phase has no more to look at.
        cursor.more = found.length === limit;
        if (found.length > 0) cursor.after = (found.at(-1) as TaskRow).id;
        rows.push(...found);
      }
      if (cursors.length > 1) rows.sort((a, b) => a.id - b.id);
      for (const row of rows) {
        if (chosen.length >= want) break;
        const placement = request.fits(policyOf(row.policy_json));
        if (placement) chosen.push({ row, placement });
      }
      if (chosen.length >= want || !cursors.some((cursor) => cursor.more)) break;
    }
    if (chosen.length >= want) break;
  }
  return chosen;
}

/** Claimable tasks after task id `after`, of one (declaring) phase or of all (null). */
function candidates(
  tx: Db,
  request: ClaimRequest,
  phase: string | null,
  after: number,
  limit: number,
): Promise<TaskRow[]> {
  // With a phase, the tasks_by_phase index (phase, state, runnable, active, id) reads just it;
  // without, the partial index of claimable tasks (indexedBy).
  return tx.all<TaskRow>(
    `${taskRowsFrom(phase === null ? `tasks t${indexedBy(tx, "tasks_claimable")}` : "tasks t")}
      WHERE ${phase === null ? "" : "t.phase = $3 AND "}t.state = 'pending' AND t.runnable = 1 AND t.active = 1
        AND t.not_before <= $1 AND t.id > $2
      ORDER BY t.id LIMIT ${limit}${forUpdate(tx, "t", { skipLocked: true })}`,
    phase === null ? [request.now, after] : [request.now, after, phase],
  );
}

/**
 * The phases to claim from, in groups of equal priority, highest first, without paused ones. A
 * task belongs to the phase that declared it (whose policy it runs with). When no phase is
 * paused and all share one priority — most sweeps — one group stands for all phases (null),
 * read by task id alone as before priorities existed.
 */
export async function claimGroups(tx: Db): Promise<Array<Array<string | null>>> {
  const phases = await tx.all<{ name: string; priority: number; paused: number }>(
    "SELECT name, priority, paused FROM phases ORDER BY priority DESC, position",
  );
  const first = phases[0]?.priority ?? 0;
  if (phases.every((phase) => !phase.paused && Number(phase.priority) === first)) return [[null]];
  const groups: string[][] = [];
  let priority: number | null = null;
  for (const phase of phases) {
    if (phase.paused) continue;
    if (Number(phase.priority) !== priority) groups.push([]);
    priority = Number(phase.priority);
    (groups.at(-1) as string[]).push(phase.name);
  }
  return groups;
}

/** When the next task held back by retry backoff becomes claimable, or null if none is. */
export async function nextBackoffExpiry(db: Db, now: number): Promise<number | null> {
  const row = await db.one<{ at: number | null }>(
    `SELECT min(not_before) AS at FROM tasks ${sql(db, { sqlite: "INDEXED BY tasks_backoff", postgres: "" })}
      WHERE state = 'pending' AND not_before > 0 AND not_before > $1 AND runnable = 1 AND active = 1`,
    [now],
  );
  return row?.at ?? null;
}

/** Tasks of a phase share one policy text: parse each distinct text once. */
const policies = new Map<string, RunPolicy>();
export function policyOf(text: string): RunPolicy {
  let policy = policies.get(text);
  if (!policy) {
    if (policies.size > 10_000) policies.clear();
    policy = JSON.parse(text) as RunPolicy;
    policies.set(text, policy);
  }
  return policy;
}
