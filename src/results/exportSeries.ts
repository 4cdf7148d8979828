import { stringify } from "csv-stringify/sync";
import type { Db } from "../ledger/db.js";
import { seriesPage, seriesTaskParams } from "../ledger/reads/series.js";
import type { Params } from "../sweep/types.js";
import { paramColumnsOf } from "./columns.js";
import { formatCell } from "./csvFile.js";

/** One point of one series, as `labsweep export --metrics --format jsonl` writes it (a line each). */
export interface ExportedPoint {
  task_id: number;
  params: Params;
  metric: string;
  step: number;
  value: number;
  attempt: number;
  /** Epoch seconds, as the task reported it. */
  time: number;
}

/** The columns around the parameters; a parameter named like one is written `param_NAME` (as in export). */
const LEADING = ["task_id"];
const TRAILING = ["metric", "step", "value", "attempt", "time"];
/** Tasks read per page: each holds at most 200 series of 1,000 points. */
const TASKS_PER_PAGE = 10;

/** Every point of every series, task by task, metric by metric, step by step. */
export async function* exportedPoints(db: Db): AsyncGenerator<ExportedPoint[]> {
  for (let after = 0; ; ) {
    const rows = await seriesPage(db, after, TASKS_PER_PAGE);
    if (rows.length === 0) return;
    const params = new Map<number, Params>();
    yield rows.map((row) => {
      const taskId = Number(row.task_id);
      if (!params.has(taskId)) params.set(taskId, JSON.parse(row.params_json) as Params);
      return {
        task_id: taskId,
        params: params.get(taskId) as Params,
        metric: row.name,
        step: Number(row.step),
        value: Number(row.value),
        attempt: Number(row.attempt),
        time: Number(row.time),
      };
    });
    after = Number((rows.at(-1) as { task_id: number }).task_id);
  }
}

/**
 * Writes the series as CSV (task_id, the parameters, metric, step, value, attempt, time) or JSONL
 * (one point a line), a page at a time: a sweep's curves may be far larger than its results.
 */
export async function writeSeries(
  db: Db,
  format: "csv" | "jsonl",
  write: (text: string) => void | Promise<void>,
): Promise<void> {
  if (format === "jsonl") {
    for await (const page of exportedPoints(db))
      await write(page.map((point) => `${JSON.stringify(point)}\n`).join(""));
    return;
  }
  const names = new Set<string>();
  for await (const params of seriesTaskParams(db)) for (const name of Object.keys(params)) names.add(name);
  const columns = paramColumnsOf(names, [...LEADING, ...TRAILING]);
  await write(stringify([[...LEADING, ...columns.values(), ...TRAILING]]));
  for await (const page of exportedPoints(db)) {
    const rows = page.map((point) => [
      String(point.task_id),
      ...[...names].map((name) => formatCell(point.params[name])),
      point.metric,
      String(point.step),
      String(point.value),
      String(point.attempt),
      String(point.time),
    ]);
    await write(stringify(rows));
  }
}
