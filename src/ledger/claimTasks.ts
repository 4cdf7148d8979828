import type { Lease } from "../protocol/interfaces.js";
import type { Placement } from "../sweep/types.js";
import { type ClaimRequest, fittingTasks, openAttempt } from "./claimTask.js";
import type { Db } from "./db.js";
import { toTask } from "./rows.js";

/**
 * Up to `max` claimable tasks, lowest-numbered first, each one that `fits` accepts, with fresh
 * attempts, in one transaction. `fits` is asked about candidates in order and every placement it
 * returns is taken, so it may count each against the capacity left (leaseMany does).
 * On PostgreSQL this is two statements whatever `max` is, not five per task: one reads and
 * locks candidates (`FOR UPDATE … SKIP LOCKED`, so concurrent claimers take disjoint tasks), one
 * opens the attempts, marks the tasks running, logs the events and returns the placements. On
 * SQLite, the candidates are read once and each is opened in turn: statements there are
 * function calls, not round trips.
 */
export async function claimTasks(db: Db, request: ClaimRequest, max: number): Promise<Lease[]> {
  if (max < 1) return [];
  if (db.dialect !== "postgres") {
    return db.transaction(async (tx) => {
      const claims: Lease[] = [];
      for (const fitting of await fittingTasks(tx, request, max))
        claims.push(await openAttempt(tx, request, fitting, false));
      if (claims.length === 0) return claims;
      const byTask = new Map(claims.map((claim) => [claim.task.id, claim]));
      for (const { task_id, ...placement } of await tx.all<Placement & { task_id: number }>(
        `SELECT p.task_id, p.phase, p.output_dir AS "outputDir" FROM placements p JOIN phases f ON f.name = p.phase
          WHERE p.task_id IN (SELECT value FROM json_each($1)) AND p.active = 1
          ORDER BY p.task_id, f.position, p.output_dir`,
        [JSON.stringify([...byTask.keys()])],
      ))
        byTask.get(task_id)?.placements.push(placement);
      return claims;
    });
  }
  return db.transaction(async (tx) => {
    // Read and locked `FOR UPDATE … SKIP LOCKED`: as many candidates as wanted first (in a
    // uniform sweep they all fit, and no claimer holds more than it takes), then a further few.
    const chosen = await fittingTasks(tx, request, max);
    if (chosen.length === 0) return [];
    const opened = await tx.all<{ id: number; task_id: number; number: number } & Placement>(
      CLAIM_BATCH_SQL,
      [
        chosen.map(({ row }) => row.id),
        chosen.map(({ placement }) => placement.gpuIds.join(",")),
        // Each event's detail but its first key, the attempt id the statement assigns.
        chosen.map(({ placement }) =>
          JSON.stringify({ worker: request.worker, gpus: placement.gpuIds }).slice(1),
        ),
        request.worker,
        request.host,
        request.now,
        request.now + request.leaseMs,
      ],
    );
    return chosen.map(({ row, placement }) => {
      const mine = opened.filter((found) => found.task_id === row.id);
      const first = mine[0] as (typeof mine)[number];
      return {
        task: { ...toTask(row), state: "running" },
        attemptId: first.id,
        attemptNumber: Number(first.number),
        gpuIds: placement.gpuIds,
        placements: mine
          .filter((found) => found.phase !== null)
          .map(({ phase, outputDir }) => ({ phase, outputDir })),
      };
    });
  });
}

/**
 * claimTasks' write on PostgreSQL, from parallel arrays of task ids, GPU lists and event
 * details: one attempt per task (numbered by the attempts before it), the task running under
 * it, a task_started event, and one row per placement (first-declared phase first) to return.
 * The placements are read per task (LATERAL, kept from being flattened into a join by OFFSET 0):
 * joined as a whole, a plan made before the table's statistics existed scanned every placement
 * for each batch.
 */
const CLAIM_BATCH_SQL = `WITH chosen AS (
  SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) WITH ORDINALITY AS c(task_id, gpu_ids, detail, n)
), opened AS (
  INSERT INTO attempts (task_id, number, worker, host, gpu_ids, started_at, lease_expires)
  SELECT c.task_id, (SELECT count(*) FROM attempts a WHERE a.task_id = c.task_id) + 1, $4, $5, c.gpu_ids, $6, $7
    FROM chosen c ORDER BY c.n
  RETURNING id, task_id, number
), started AS (
  UPDATE tasks SET state = 'running', attempt_id = o.id FROM opened o WHERE tasks.id = o.task_id
), logged AS (
  INSERT INTO events (at, kind, task_id, detail)
  SELECT $6, 'task_started', o.task_id, '{"attempt":' || o.id || ',' || c.detail
    FROM opened o JOIN chosen c ON c.task_id = o.task_id ORDER BY c.n
)
SELECT o.id, o.task_id, o.number, p.phase, p."outputDir"
  FROM opened o LEFT JOIN LATERAL (
         SELECT p.phase, p.output_dir AS "outputDir", f.position FROM placements p JOIN phases f ON f.name = p.phase
          WHERE p.task_id = o.task_id AND p.active = 1 OFFSET 0) p ON true
 ORDER BY o.task_id, p.position, p."outputDir"`;
