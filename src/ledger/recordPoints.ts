import type { AttemptPoints } from "../protocol/interfaces.js";
import {
  MAX_POINTS_PER_SERIES,
  MAX_SERIES_PER_TASK,
  validName,
  validStep,
  validValue,
} from "../protocol/points.js";
import type { Db } from "./db.js";
import { forUpdate, sql } from "./dialect.js";

export interface RecordedPoints {
  /** Metric values written (inserted, or replacing an earlier attempt's or the same one's). */
  stored: number;
  /** Values left out: an unknown or another agent's attempt, a bad value, a name past the cap. */
  dropped: number;
  /** Tasks that got points. */
  taskIds: number[];
}

/** A value bound for one series, by step. */
type SeriesPoints = Map<number, { value: number; time: number }>;

/** Points per statement. */
const INSERT_ROWS = 1000;

/**
 * One statement text whatever the batch (rows as a JSON array on SQLite, arrays on PostgreSQL):
 * a text per batch size would fill both backends' caches of prepared statements.
 */
const UPSERT = {
  sqlite: `INSERT INTO metric_points (task_id, name, step, value, attempt, time)
    SELECT $1, $2, json_extract(r.value, '$[0]'), json_extract(r.value, '$[1]'), $3, json_extract(r.value, '$[2]')
    FROM json_each($4) r WHERE true
    ON CONFLICT (task_id, name, step) DO UPDATE SET value = excluded.value, attempt = excluded.attempt, time = excluded.time
    WHERE excluded.attempt >= metric_points.attempt`,
  postgres: `INSERT INTO metric_points (task_id, name, step, value, attempt, time)
    SELECT $1, $2, r.step, r.value, $3, r.time FROM unnest($4::bigint[], $5::float8[], $6::float8[]) AS r(step, value, time)
    ON CONFLICT (task_id, name, step) DO UPDATE SET value = excluded.value, attempt = excluded.attempt, time = excluded.time
    WHERE excluded.attempt >= metric_points.attempt`,
};

const THIN = {
  sqlite:
    "DELETE FROM metric_points WHERE task_id = $1 AND name = $2 AND step IN (SELECT value FROM json_each($3))",
  postgres: "DELETE FROM metric_points WHERE task_id = $1 AND name = $2 AND step = ANY($3::bigint[])",
};

/**
 * Stores the points agents relayed. Idempotent: a point is keyed by (task, metric, step), and an
 * attempt's point replaces one of the same or an earlier attempt, never a later one's — a resend
 * after an outage changes nothing, and a dead attempt's late points cannot overwrite its
 * successor's curve. Each task keeps at most MAX_SERIES_PER_TASK metrics, each series at most
 * MAX_POINTS_PER_SERIES points (thinned past it). `worker`, when given, must own each attempt.
 */
export async function recordPoints(
  db: Db,
  batches: readonly AttemptPoints[],
  worker?: string,
): Promise<RecordedPoints> {
  return db.transaction(
    async (tx) => {
      const result: RecordedPoints = { stored: 0, dropped: 0, taskIds: [] };
      const attempts = await attemptsOf(tx, batches, worker);
      // Task id order: two coordinators recording points of the same tasks lock them in one order.
      const ordered = [...batches].sort(
        (a, b) => (attempts.get(a.attemptId)?.task_id ?? 0) - (attempts.get(b.attemptId)?.task_id ?? 0),
      );
      for (const batch of ordered) {
        const attempt = attempts.get(batch.attemptId);
        if (!attempt) {
          result.dropped += countValues(batch);
          continue;
        }
        const stored = result.stored;
        await recordAttemptPoints(tx, attempt, batch, result);
        if (result.stored > stored && !result.taskIds.includes(attempt.task_id))
          result.taskIds.push(attempt.task_id);
      }
      return result;
    },
    { keyed: true },
  );
}

interface AttemptKey {
  task_id: number;
  number: number;
}

async function attemptsOf(
  tx: Db,
  batches: readonly AttemptPoints[],
  worker: string | undefined,
): Promise<Map<number, AttemptKey>> {
  const found = new Map<number, AttemptKey>();
  for (const { attemptId } of batches) {
    if (found.has(attemptId) || !Number.isSafeInteger(attemptId)) continue;
    const row = await tx.one<AttemptKey & { worker: string }>(
      `SELECT a.task_id, a.number, a.worker FROM attempts a JOIN tasks t ON t.id = a.task_id WHERE a.id = $1${forUpdate(tx, "t")}`,
      [attemptId],
    );
    if (row && (worker === undefined || row.worker === worker))
      found.set(attemptId, { task_id: Number(row.task_id), number: Number(row.number) });
  }
  return found;
}

async function recordAttemptPoints(
  tx: Db,
  attempt: AttemptKey,
  batch: AttemptPoints,
  result: RecordedPoints,
): Promise<void> {
  const known = new Map(
    (
      await tx.all<{ name: string; points: number; last_step: number }>(
        "SELECT name, points, last_step FROM metric_series WHERE task_id = $1",
        [attempt.task_id],
      )
    ).map((row) => [row.name, { points: Number(row.points), lastStep: Number(row.last_step) }]),
  );
  const series = new Map<string, SeriesPoints>();
  for (const point of batch.points) {
    for (const [name, value] of Object.entries(point.metrics ?? {})) {
      const room =
        known.has(name) || series.has(name) || known.size + newNames(series, known) < MAX_SERIES_PER_TASK;
      if (!room || !validName(name) || !validValue(value) || !validStep(point.step)) {
        result.dropped++;
        continue;
      }
      const time = validValue(point.time) ? point.time : Date.now() / 1000;
      const steps = series.get(name) ?? new Map();
      series.set(name, steps.set(point.step, { value, time }));
    }
  }
  for (const [name, steps] of series) {
    await writeSeries(tx, attempt, name, steps, known.get(name));
    result.stored += steps.size;
  }
}

function newNames(series: Map<string, SeriesPoints>, known: Map<string, unknown>): number {
  let count = 0;
  for (const name of series.keys()) if (!known.has(name)) count++;
  return count;
}

/**
 * Upserts one series' points and keeps its count: points past its last step are new rows for
 * sure (the common case, a curve growing); any other step may replace a row, so the series is
 * counted again (a resend, or a later attempt going over old steps).
 */
async function writeSeries(
  tx: Db,
  attempt: AttemptKey,
  name: string,
  steps: SeriesPoints,
  before: { points: number; lastStep: number } | undefined,
): Promise<void> {
  const entries = [...steps.entries()];
  for (let i = 0; i < entries.length; i += INSERT_ROWS) {
    const rows = entries.slice(i, i + INSERT_ROWS);
    await tx.run(sql(tx, UPSERT), [
      attempt.task_id,
      name,
      attempt.number,
      ...(tx.dialect === "postgres"
        ? [rows.map(([step]) => step), rows.map(([, p]) => p.value), rows.map(([, p]) => p.time)]
        : [JSON.stringify(rows.map(([step, p]) => [step, p.value, p.time]))]),
    ]);
  }
  const lastStep = Math.max(before?.lastStep ?? -1, ...steps.keys());
  let points: number;
  if (before && entries.every(([step]) => step > before.lastStep)) points = before.points + entries.length;
  else if (!before) points = entries.length;
  else points = await countSeries(tx, attempt.task_id, name);
  if (points > MAX_POINTS_PER_SERIES) points -= await thinSeries(tx, attempt.task_id, name);
  await tx.run(
    `INSERT INTO metric_series (task_id, name, points, last_step) VALUES ($1, $2, $3, $4)
     ON CONFLICT (task_id, name) DO UPDATE SET points = excluded.points, last_step = excluded.last_step`,
    [attempt.task_id, name, points, lastStep],
  );
}

async function countSeries(tx: Db, taskId: number, name: string): Promise<number> {
  const row = await tx.one<{ n: number }>(
    "SELECT count(*) AS n FROM metric_points WHERE task_id = $1 AND name = $2",
    [taskId, name],
  );
  return Number(row?.n ?? 0);
}

/**
 * Drops every other point of a series, keeping its first and its last; returns how many went.
 * The steps are picked here, not by a window function in the DELETE, which PostgreSQL ran once
 * per row (seconds for a thousand points).
 */
async function thinSeries(tx: Db, taskId: number, name: string): Promise<number> {
  const rows = await tx.all<{ step: number }>(
    "SELECT step FROM metric_points WHERE task_id = $1 AND name = $2 ORDER BY step",
    [taskId, name],
  );
  const doomed = rows.filter((_, i) => i % 2 === 1 && i < rows.length - 1).map((row) => Number(row.step));
  const { changes } = await tx.run(sql(tx, THIN), [
    taskId,
    name,
    tx.dialect === "postgres" ? doomed : JSON.stringify(doomed),
  ]);
  return changes;
}

function countValues(batch: AttemptPoints): number {
  let count = 0;
  for (const point of batch.points) count += Object.keys(point.metrics ?? {}).length;
  return count;
}
