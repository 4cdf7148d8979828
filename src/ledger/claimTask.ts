import type { Placement, RunPolicy } from "../sweep/types.js";
import type { Db } from "./db.js";
import { forUpdate, sql } from "./dialect.js";
import { recordEvent } from "./recordEvent.js";
import { TASK_ROW_SQL, type Task, type TaskRow, toTask } from "./rows.js";

export interface ClaimRequest {
  worker: string;
  host: string;
  now: number;
  /** Lease length; the holder must renew before it runs out. */
  leaseMs: number;
  /** Whether this worker's free capacity can run a task with this policy (resources, tags). */
  fits: (policy: RunPolicy) => { gpuIds: number[] } | null;
}

export interface Claim {
  task: Task;
  attemptId: number;
  attemptNumber: number;
  gpuIds: number[];
  /** Phases and output dirs of the task, first-declared phase first. */
  placements: Placement[];
}

/**
 * How many claimable tasks to look at for one that fits before giving up for now: a few first
 * (in a uniform sweep the first fits, and reading 64 rows per claim was a tenth of a busy
 * coordinator's time), then further.
 */
const CANDIDATES = [4, 64];
/**
 * Passes of 64 more while fitting candidates keep being taken by concurrent claimers (other
 * coordinators on one PostgreSQL database): their claims are no reason to give up.
 */
const RACE_PASSES = 16;

/**
 * Hands the lowest-numbered claimable task that fits to a worker and opens an attempt for it,
 * in one transaction, so a task is never handed out twice. On PostgreSQL the chosen task is
 * locked with `FOR UPDATE … SKIP LOCKED`: concurrent claimers skip it rather than wait.
 */
export async function claimTask(db: Db, request: ClaimRequest): Promise<Claim | null> {
  return db.transaction(async (tx) => {
    const found = await firstFitting(tx, request);
    if (!found) return null;
    const { row, placement } = found;
    const task = toTask(row);
    const attemptNumber = (await countAttempts(tx, task.id)) + 1;
    const attempt = await tx.one<{ id: number }>(
      `INSERT INTO attempts (task_id, number, worker, host, gpu_ids, started_at, lease_expires)
       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
      [
        task.id,
        attemptNumber,
        request.worker,
        request.host,
        placement.gpuIds.join(","),
        request.now,
        request.now + request.leaseMs,
      ],
    );
    const attemptId = attempt?.id as number;
    await tx.run("UPDATE tasks SET state = 'running', attempt_id = $2 WHERE id = $1", [task.id, attemptId]);
    await recordEvent(tx, request.now, "task_started", task.id, {
      attempt: attemptId,
      worker: request.worker,
      gpus: placement.gpuIds,
    });
    const placements = await tx.all<Placement>(
      `SELECT p.phase, p.output_dir AS "outputDir" FROM placements p JOIN phases f ON f.name = p.phase
        WHERE p.task_id = $1 AND p.active = 1 ORDER BY f.position, p.output_dir`,
      [task.id],
    );
    return {
      task: { ...task, state: "running" },
      attemptId,
      attemptNumber,
      gpuIds: placement.gpuIds,
      placements,
    };
  });
}

/**
 * The lowest-numbered claimable task that fits the request, locked for this transaction, and
 * where it would run.
 */
async function firstFitting(
  tx: Db,
  request: ClaimRequest,
): Promise<{ row: TaskRow; placement: { gpuIds: number[] } } | null> {
  let after = 0;
  let taken = 0;
  for (let pass = 0; pass < CANDIDATES.length || (taken > 0 && pass < RACE_PASSES); pass++) {
    const limit = CANDIDATES[Math.min(pass, CANDIDATES.length - 1)] as number;
    const candidates = await tx.all<{ id: number; policy_json: string }>(
      `SELECT t.id, f.policy_json FROM tasks t JOIN phases f ON f.name = t.phase
        WHERE t.state = 'pending' AND t.runnable = 1 AND t.active = 1 AND t.not_before <= $1 AND t.id > $2
        ORDER BY t.id LIMIT ${limit}`,
      [request.now, after],
    );
    for (const candidate of candidates) {
      const placement = request.fits(policyOf(candidate.policy_json));
      if (!placement) continue;
      // SQLite: the transaction holds the database's write lock, so the candidate is still
      // pending. PostgreSQL: another coordinator may be claiming it right now — lock it, or skip
      // it if it is locked or was claimed since the candidates were read.
      const row = await tx.one<TaskRow>(
        `${TASK_ROW_SQL} WHERE t.id = $1 AND t.state = 'pending'${forUpdate(tx, "t", { skipLocked: true })}`,
        [candidate.id],
      );
      if (row) return { row, placement };
      taken++;
    }
    // Fewer rows than asked for: there are no more to look at.
    if (candidates.length < limit) return null;
    after = (candidates.at(-1) as { id: number }).id;
  }
  return null;
}

async function countAttempts(tx: Db, taskId: number): Promise<number> {
  const row = await tx.one<{ n: number }>("SELECT count(*) AS n FROM attempts WHERE task_id = $1", [taskId]);
  return row?.n ?? 0;
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
function policyOf(text: string): RunPolicy {
  let policy = policies.get(text);
  if (!policy) {
    if (policies.size > 10_000) policies.clear();
    policy = JSON.parse(text) as RunPolicy;
    policies.set(text, policy);
  }
  return policy;
}
