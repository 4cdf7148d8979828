import type { Params } from "../../sweep/types.js";
import type { Db } from "../db.js";

/** One series as the API and exports give it: parallel arrays, by step. */
export interface SeriesArrays {
  steps: number[];
  values: number[];
  attempts: number[];
}

/**
 * Every series of one task, by metric name; null for an unknown task. Bounded by the ledger's
 * own bounds: at most MAX_SERIES_PER_TASK series of MAX_POINTS_PER_SERIES points
 * (protocol/points.ts).
 */
export async function taskSeries(db: Db, taskId: number): Promise<Record<string, SeriesArrays> | null> {
  const rows = await db.all<{ name: string; step: number; value: number; attempt: number }>(
    "SELECT name, step, value, attempt FROM metric_points WHERE task_id = $1 ORDER BY name, step",
    [taskId],
  );
  if (rows.length === 0 && !(await db.one("SELECT 1 AS found FROM tasks WHERE id = $1", [taskId])))
    return null;
  const series: Record<string, SeriesArrays> = Object.create(null);
  for (const row of rows) {
    series[row.name] ??= { steps: [], values: [], attempts: [] };
    const arrays = series[row.name] as SeriesArrays;
    arrays.steps.push(Number(row.step));
    arrays.values.push(Number(row.value));
    arrays.attempts.push(Number(row.attempt));
  }
  return { ...series };
}

/** Metric names listed at most (alphabetical); a sweep has a handful, a hostile task no more than this. */
export const MAX_METRIC_NAMES = 1000;

/** The metric names that have a series, of the tasks of `phase` when given; alphabetical. */
export async function metricNames(db: Db, phase?: string): Promise<string[]> {
  const rows =
    phase === undefined
      ? await db.all<{ name: string }>("SELECT DISTINCT name FROM metric_series ORDER BY name LIMIT $1", [
          MAX_METRIC_NAMES,
        ])
      : await db.all<{ name: string }>(
          `SELECT DISTINCT s.name FROM metric_series s
           WHERE EXISTS (SELECT 1 FROM placements p WHERE p.task_id = s.task_id AND p.phase = $1 AND p.active = 1)
           ORDER BY s.name LIMIT $2`,
          [phase, MAX_METRIC_NAMES],
        );
  return rows.map((row) => row.name);
}

/** Tasks one metric's series read gives at most, lowest ids first (`truncated` says when more have it). */
export const MAX_SERIES_TASKS = 500;

export interface MetricAcrossTasks {
  name: string;
  tasks: Array<{ taskId: number; params: Params; steps: number[]; values: number[] }>;
  truncated: boolean;
}

/**
 * One metric's series for every task that has it (of `phase` when given), with each task's
 * parameters: what the Results view averages over seeds. At most MAX_SERIES_TASKS tasks, each at
 * most MAX_POINTS_PER_SERIES points.
 */
export async function seriesAcrossTasks(db: Db, name: string, phase?: string): Promise<MetricAcrossTasks> {
  const inPhase =
    phase === undefined
      ? ""
      : " AND EXISTS (SELECT 1 FROM placements p WHERE p.task_id = s.task_id AND p.phase = $3 AND p.active = 1)";
  const tasks = await db.all<{ task_id: number; params_json: string }>(
    `SELECT s.task_id, t.params_json FROM metric_series s JOIN tasks t ON t.id = s.task_id
     WHERE s.name = $1${inPhase} ORDER BY s.task_id LIMIT $2`,
    phase === undefined ? [name, MAX_SERIES_TASKS + 1] : [name, MAX_SERIES_TASKS + 1, phase],
  );
  const truncated = tasks.length > MAX_SERIES_TASKS;
  const result: MetricAcrossTasks = { name, tasks: [], truncated };
  for (const task of tasks.slice(0, MAX_SERIES_TASKS)) {
    const rows = await db.all<{ step: number; value: number }>(
      "SELECT step, value FROM metric_points WHERE task_id = $1 AND name = $2 ORDER BY step",
      [task.task_id, name],
    );
    result.tasks.push({
      taskId: Number(task.task_id),
      params: JSON.parse(task.params_json) as Params,
      steps: rows.map((row) => Number(row.step)),
      values: rows.map((row) => Number(row.value)),
    });
  }
  return result;
}

/** Points of every series of tasks after `afterTaskId`, a page of tasks at a time, for `export --metrics`. */
export async function seriesPage(
  db: Db,
  afterTaskId: number,
  tasks: number,
): Promise<
  Array<{
    task_id: number;
    params_json: string;
    name: string;
    step: number;
    value: number;
    attempt: number;
    time: number;
  }>
> {
  return db.all(
    `SELECT m.task_id, t.params_json, m.name, m.step, m.value, m.attempt, m.time
     FROM metric_points m JOIN tasks t ON t.id = m.task_id
     WHERE m.task_id IN (SELECT DISTINCT task_id FROM metric_series WHERE task_id > $1 ORDER BY task_id LIMIT $2)
     ORDER BY m.task_id, m.name, m.step`,
    [afterTaskId, tasks],
  );
}

/** The parameters of every task that has a series, in task order: `export --metrics` lays out its columns from them. */
export async function* seriesTaskParams(db: Db): AsyncGenerator<Params> {
  for (let after = 0; ; ) {
    const rows = await db.all<{ id: number; params_json: string }>(
      `SELECT t.id, t.params_json FROM tasks t
       WHERE t.id > $1 AND EXISTS (SELECT 1 FROM metric_series s WHERE s.task_id = t.id)
       ORDER BY t.id LIMIT 1000`,
      [after],
    );
    if (rows.length === 0) return;
    for (const row of rows) yield JSON.parse(row.params_json) as Params;
    after = Number((rows.at(-1) as { id: number }).id);
  }
}

/**
 * For each running task with series, a mark that changes when it gets new points (its point
 * count and last step): the dashboard's event stream compares marks to announce new points.
 */
export async function runningSeriesMarks(db: Db): Promise<Map<number, string>> {
  const rows = await db.all<{ task_id: number; points: number; last_step: number }>(
    `SELECT s.task_id, sum(s.points) AS points, max(s.last_step) AS last_step
     FROM tasks t JOIN metric_series s ON s.task_id = t.id
     WHERE t.state = 'running' GROUP BY s.task_id`,
  );
  return new Map(rows.map((row) => [Number(row.task_id), `${Number(row.points)}:${Number(row.last_step)}`]));
}
