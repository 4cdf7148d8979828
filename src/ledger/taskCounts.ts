import type { Db } from "./db.js";
import { indexedBy, sql } from "./dialect.js";

export interface Counts {
  unique: number;
  succeeded: number;
  failed: number;
  running: number;
  /** Claimable now or after a retry backoff. */
  pending: number;
  /** Held by a gate: waiting for `after` phases, or blocked by a failed gate. */
  blocked: number;
  cancelled: number;
}

export interface PhaseProgress extends Counts {
  name: string;
  state: "waiting" | "open" | "blocked" | "stopped";
  reason: string | null;
  configFile: string;
  /** Higher leases first (the phase's `priority:`). */
  priority: number;
  /** `labsweep pause`d: starts no new task. (1 or 0) */
  paused: number;
}

// count(CASE …) rather than sum(condition): PostgreSQL has no sum of booleans. count(t.id), not
// count(*): a phase without tasks (LEFT JOIN) counts 0.
const COUNT_COLUMNS = `
  count(t.id) AS "unique",
  count(CASE WHEN t.state = 'succeeded' THEN 1 END) AS succeeded,
  count(CASE WHEN t.state = 'failed' THEN 1 END) AS failed,
  count(CASE WHEN t.state = 'running' THEN 1 END) AS running,
  count(CASE WHEN t.state = 'pending' AND t.runnable = 1 THEN 1 END) AS pending,
  count(CASE WHEN t.state = 'blocked' OR (t.state = 'pending' AND t.runnable = 0) THEN 1 END) AS blocked,
  count(CASE WHEN t.state = 'cancelled' THEN 1 END) AS cancelled`;

/** Counts of the sweep's tasks (those some loaded config still lists) by state. */
export async function taskCounts(db: Db): Promise<Counts> {
  const row = await db.one<Counts>(`SELECT ${COUNT_COLUMNS} FROM tasks t WHERE t.active = 1`);
  return row as Counts;
}

/** The same counts per phase, with each phase's gate state and why it waits. */
export async function phaseProgress(db: Db): Promise<PhaseProgress[]> {
  return db.all<PhaseProgress>(
    `SELECT f.name, f.state, f.reason, f.config_file AS "configFile", f.priority, f.paused, ${COUNT_COLUMNS}
       FROM phases f
       LEFT JOIN placements p ON p.phase = f.name AND p.active = 1
       LEFT JOIN tasks t ON t.id = p.task_id
      WHERE f.active = 1
      GROUP BY f.name
      ORDER BY f.position`,
  );
}

/** Tasks in the ledger that no loaded config lists any more. */
export async function droppedTaskCount(db: Db): Promise<number> {
  const row = await db.one<{ n: number }>("SELECT count(*) AS n FROM tasks WHERE active = 0");
  return row?.n ?? 0;
}

/** Mean wall time of succeeded attempts, for an ETA; null before the first success. */
export async function meanTaskSeconds(db: Db): Promise<number | null> {
  const row = await db.one<{ mean: number | null }>(
    "SELECT avg(wall_seconds) AS mean FROM tasks WHERE state = 'succeeded' AND origin = 'run'",
  );
  return row?.mean ?? null;
}

/** Resources the sweep's sampled tasks used; null fields when no task reported them. */
export interface UsageTotals {
  /** GPU energy of every sampled task, summed (Wh). */
  energy_wh: number | null;
  /** The largest peak RSS of any task (MiB). */
  peak_rss_mb_max: number | null;
}

/** Usage over the sweep's succeeded tasks (tasks.usage_json, written by finishAttempt). */
export async function usageTotals(db: Db): Promise<UsageTotals> {
  // `status` reads without migrating: a SQLite ledger from before migration 2 has no usage_json
  // (PostgreSQL ledgers start at the current schema).
  if (db.dialect === "sqlite") {
    const hasColumn = await db.one(
      "SELECT 1 AS yes FROM pragma_table_info('tasks') WHERE name = 'usage_json'",
    );
    if (!hasColumn) return { energy_wh: null, peak_rss_mb_max: null };
  }
  const field = (name: string) =>
    sql(db, {
      sqlite: `json_extract(usage_json, '$.${name}')`,
      postgres: `(usage_json::jsonb ->> '${name}')::double precision`,
    });
  const row = await db.one<UsageTotals>(
    `SELECT sum(${field("energy_wh")}) AS energy_wh, max(${field("peak_rss_mb")}) AS peak_rss_mb_max
       FROM tasks WHERE active = 1 AND usage_json IS NOT NULL`,
  );
  const energy = row?.energy_wh ?? null;
  return {
    energy_wh: energy === null ? null : Math.round(energy * 1e4) / 1e4,
    peak_rss_mb_max: row?.peak_rss_mb_max ?? null,
  };
}

/** A running task, by the attempt holding it: for telling started tasks from ones held ahead. */
export interface RunningTask {
  taskId: number;
  worker: string;
  /** Its process was reported (pid recorded); a task held ahead has none yet. */
  started: boolean;
  /** Every active phase it belongs to. */
  phases: string[];
}

/** The tasks the ledger calls running (few: at most the slots of every agent, plus held ones). */
export async function runningTasks(db: Db): Promise<RunningTask[]> {
  const rows = await db.all<{ id: number; worker: string; pid: number | null }>(
    `SELECT t.id, a.worker, a.pid FROM tasks t JOIN attempts a ON a.id = t.attempt_id
      WHERE t.state = 'running' AND t.active = 1 ORDER BY t.id`,
  );
  if (rows.length === 0) return [];
  const placements = await db.all<{ task_id: number; phase: string }>(
    `SELECT p.task_id, p.phase FROM placements p JOIN tasks t ON t.id = p.task_id
      WHERE t.state = 'running' AND t.active = 1 AND p.active = 1`,
  );
  return rows.map((row) => ({
    taskId: Number(row.id),
    worker: row.worker,
    started: row.pid !== null,
    phases: [...new Set(placements.filter((p) => Number(p.task_id) === Number(row.id)).map((p) => p.phase))],
  }));
}

/** Pending tasks that wait for their phases' `after` phases (not claimable yet), in all and per phase. */
export async function waitingCounts(db: Db): Promise<{ total: number; byPhase: Map<string, number> }> {
  const total = await db.one<{ n: number }>(
    `SELECT count(*) AS n FROM tasks${indexedBy(db, "tasks_waiting")} WHERE state = 'pending' AND runnable = 0 AND active = 1`,
  );
  const rows = await db.all<{ phase: string; n: number }>(
    `SELECT p.phase, count(*) AS n FROM placements p JOIN tasks t ON t.id = p.task_id
      WHERE t.state = 'pending' AND t.runnable = 0 AND t.active = 1 AND p.active = 1
      GROUP BY p.phase`,
  );
  return {
    total: Number(total?.n ?? 0),
    byPhase: new Map(rows.map((row) => [row.phase, Number(row.n)])),
  };
}
