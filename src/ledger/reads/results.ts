import type { Db } from "../db.js";
import { decodeIdCursor, encodeCursor } from "./cursor.js";
import { SqlParams } from "./sql.js";
import { compareValues } from "./values.js";

/** Parameters and metrics the results table and plot builder offer. */
export interface ResultFields {
  /** Parameter names, those that vary first, each with some of its values. */
  params: Array<{ name: string; varies: boolean; values: unknown[] }>;
  /** Numeric metric names found in results. */
  metrics: string[];
  phases: string[];
  /** Succeeded tasks that have results. */
  results: number;
}

const SAMPLE = 500;

/** Fields from a sample of tasks (the first and last few hundred), so it stays cheap at any size. */
export async function resultFields(db: Db): Promise<ResultFields> {
  const sample = await db.all<{ params_json: string; result_json: string | null }>(
    `SELECT params_json, result_json FROM (
       SELECT params_json, result_json FROM (SELECT params_json, result_json FROM tasks WHERE state = 'succeeded' AND result_json IS NOT NULL ORDER BY id LIMIT ${SAMPLE}) a
       UNION ALL
       SELECT params_json, result_json FROM (SELECT params_json, result_json FROM tasks WHERE state = 'succeeded' AND result_json IS NOT NULL ORDER BY id DESC LIMIT ${SAMPLE}) b
       UNION ALL
       SELECT params_json, NULL FROM (SELECT params_json FROM tasks ORDER BY id LIMIT ${SAMPLE}) c
       UNION ALL
       SELECT params_json, NULL FROM (SELECT params_json FROM tasks ORDER BY id DESC LIMIT ${SAMPLE}) d
     ) sample`,
  );
  const values = new Map<string, Map<string, unknown>>();
  const metrics = new Set<string>();
  for (const row of sample) {
    for (const [key, value] of Object.entries(JSON.parse(row.params_json) as Record<string, unknown>)) {
      const seen = values.get(key) ?? new Map<string, unknown>();
      if (seen.size < 50) seen.set(JSON.stringify(value), value);
      values.set(key, seen);
    }
    if (row.result_json) {
      for (const [key, value] of Object.entries(JSON.parse(row.result_json) as Record<string, unknown>))
        if (typeof value === "number") metrics.add(key);
    }
  }
  const params = [...values].map(([name, seen]) => ({
    name,
    varies: seen.size > 1,
    values: [...seen.values()].sort(compareValues).slice(0, 20),
  }));
  params.sort((a, b) => Number(b.varies) - Number(a.varies));
  const phases = await db.all<{ name: string }>("SELECT name FROM phases WHERE active = 1 ORDER BY position");
  const count = await db.one<{ n: number }>(
    "SELECT count(*) AS n FROM tasks WHERE state = 'succeeded' AND result_json IS NOT NULL AND active = 1",
  );
  return {
    params,
    metrics: [...metrics].sort(),
    phases: phases.map((phase) => phase.name),
    results: Number(count?.n ?? 0),
  };
}

export interface ResultsQuery {
  phase?: string;
  /** Rows per page, 1–1000. (Default: 100) */
  limit?: number;
  after?: string;
}

export interface ResultsPage {
  params: string[];
  metrics: string[];
  rows: Array<{
    id: number;
    phase: string;
    params: Record<string, unknown>;
    metrics: Record<string, unknown>;
    wallSeconds: number | null;
  }>;
  next: string | null;
}

/** Completed results in task order, by keyset; columns are the union of the page's keys. */
export async function resultsPage(db: Db, query: ResultsQuery): Promise<ResultsPage> {
  const limit = Math.min(1000, Math.max(1, Math.floor(query.limit ?? 100)));
  const params = new SqlParams();
  const conditions = succeededIn(params, query.phase);
  if (query.after !== undefined) conditions.push(`t.id > ${params.add(decodeIdCursor(query.after))}`);
  const found = await db.all<{
    id: number;
    phase: string;
    params_json: string;
    result_json: string;
    wall_seconds: number | null;
  }>(
    `SELECT t.id, t.phase, t.params_json, t.result_json, t.wall_seconds FROM tasks t
      WHERE ${conditions.join(" AND ")} ORDER BY t.id LIMIT ${params.add(limit + 1)}`,
    params.values,
  );
  const rows = found.slice(0, limit).map((row) => ({
    id: Number(row.id),
    phase: row.phase,
    params: JSON.parse(row.params_json) as Record<string, unknown>,
    metrics: JSON.parse(row.result_json) as Record<string, unknown>,
    wallSeconds: row.wall_seconds == null ? null : Number(row.wall_seconds),
  }));
  const paramNames = new Set<string>();
  const metricNames = new Set<string>();
  for (const row of rows) {
    for (const key of Object.keys(row.params)) paramNames.add(key);
    for (const key of Object.keys(row.metrics)) metricNames.add(key);
  }
  const last = found.length > limit ? rows.at(-1) : undefined;
  return {
    params: [...paramNames],
    metrics: [...metricNames],
    rows,
    next: last ? encodeCursor([last.id]) : null,
  };
}

/** Conditions for the succeeded tasks with results (of one phase). */
export function succeededIn(params: SqlParams, phase: string | undefined): string[] {
  const conditions = ["t.state = 'succeeded'", "t.active = 1", "t.result_json IS NOT NULL"];
  if (phase !== undefined)
    conditions.push(
      `EXISTS (SELECT 1 FROM placements p WHERE p.task_id = t.id AND p.phase = ${params.add(phase)} AND p.active = 1)`,
    );
  return conditions;
}
