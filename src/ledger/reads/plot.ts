import type { Db } from "../db.js";
import { ledgerVersion } from "./overview.js";
import { succeededIn } from "./results.js";
import { jsonKey, jsonKeyArg, SqlParams } from "./sql.js";
import { compareValues, typed } from "./values.js";

export interface PlotQuery {
  /** Parameter on the x axis. */
  x: string;
  /** Metric on the y axis. */
  y: string;
  /** Parameter drawn as one line per value. (Default: one line) */
  series?: string;
  /** Parameter giving one small plot per value. (Default: one plot) */
  facet?: string;
  phase?: string;
}

export interface PlotPoint {
  x: unknown;
  /** Results averaged: every parameter not chosen (seeds, typically) varies among them. */
  n: number;
  mean: number;
  /** Sample standard deviation (n − 1); 0 for a single result. */
  std: number;
  min: number;
  max: number;
}

export interface PlotData {
  query: PlotQuery;
  /** Results that had a numeric y. */
  used: number;
  /** Whether every x is a number (a numeric axis) or not (categories). */
  numericX: boolean;
  facets: Array<{ facet: unknown; series: Array<{ series: unknown; points: PlotPoint[] }> }>;
}

/** Welford's running mean and squared deviations: one pass, stable where sums of squares are not. */
interface Group {
  f: unknown;
  s: unknown;
  x: unknown;
  n: number;
  mean: number;
  m2: number;
  min: number;
  max: number;
}

interface Aggregate {
  groups: Map<string, Group>;
  used: number;
  /** Counted tasks that finished recently enough to come up again, by id, with their finish time. */
  recent: Map<number, number>;
  /** Every task that finished before this was counted by the first (aggregating) query. */
  floor: number;
  /** When the aggregate was last brought up to date (the coordinator's clock). */
  updatedAt: number;
  /** Events up to this id were checked for changes that void the aggregate. */
  checkedEvent: number;
}

/**
 * A task's finish is recorded at most this long after its finished_at (a report waits for the
 * ledger's lock with its time already taken), so a task committed after time T finished after
 * T − REORDER_MS.
 */
const REORDER_MS = 10_000;
/** Events after which an aggregate is computed again from scratch. */
const VOIDING_EVENTS = ["sweep_synced", "tasks_found_in_csv", "retry_failed", "tasks_cancelled"];

/**
 * Mean and standard deviation of a metric for each (facet, series, x), over every result of
 * succeeded tasks. The first request aggregates in SQL (count, shifted sums, min, max per group);
 * the aggregate is kept per plot and brought up to date with only the tasks finished since (by
 * the finished_at index, one pass of Welford's method), so a live sweep's plot costs its new
 * results, not all of them.
 */
export class PlotCache {
  private readonly entries = new Map<string, Aggregate>();

  constructor(
    private readonly db: Db,
    /** Plots kept. (Default: 16) */
    private readonly capacity = 16,
    private readonly now: () => number = Date.now,
  ) {}

  async plot(query: PlotQuery): Promise<PlotData> {
    const key = JSON.stringify([
      query.x,
      query.y,
      query.series ?? null,
      query.facet ?? null,
      query.phase ?? null,
    ]);
    const at = this.now();
    const lastEvent = await ledgerVersion(this.db);
    let entry = this.entries.get(key);
    if (entry && (await this.voided(entry.checkedEvent))) entry = undefined;
    if (!entry) {
      const floor = at - REORDER_MS;
      entry = {
        groups: new Map(),
        used: 0,
        recent: new Map(),
        floor,
        updatedAt: at,
        checkedEvent: lastEvent,
      };
      await aggregateBefore(this.db, query, entry, floor);
      await addRecent(this.db, query, entry, floor);
    } else {
      await addRecent(this.db, query, entry, Math.max(entry.floor, entry.updatedAt - REORDER_MS));
      entry.updatedAt = at;
      entry.checkedEvent = lastEvent;
    }
    for (const [id, finished] of entry.recent) if (finished < at - REORDER_MS) entry.recent.delete(id);
    this.entries.delete(key);
    if (this.capacity > 0) this.entries.set(key, entry);
    while (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value as string);
    return shape(query, entry);
  }

  private async voided(since: number): Promise<boolean> {
    const params = new SqlParams();
    const kinds = VOIDING_EVENTS.map((kind) => params.add(kind)).join(", ");
    const row = await this.db.one(
      `SELECT 1 AS yes FROM events WHERE id > ${params.add(since)} AND kind IN (${kinds}) LIMIT 1`,
      params.values,
    );
    return Boolean(row);
  }
}

/** Computes a plot from scratch (no cache). */
export async function plotData(db: Db, query: PlotQuery): Promise<PlotData> {
  return new PlotCache(db, 0).plot(query);
}

/** The four values per task: facet, series, x (NULL when not chosen) and a numeric y (else NULL). */
function columns(db: Db, params: SqlParams, query: PlotQuery): string {
  const field = (key: string | undefined): string =>
    key ? jsonKey(db, "params_json", params.add(jsonKeyArg(db, key))) : "NULL";
  const yKey = params.add(jsonKeyArg(db, query.y));
  const y =
    db.dialect === "postgres"
      ? `CASE WHEN jsonb_typeof(t.result_json::jsonb -> ${yKey}) = 'number' THEN (t.result_json::jsonb ->> ${yKey})::double precision END`
      : `json_extract(t.result_json, ${yKey})`;
  return `${field(query.facet)} AS f, ${field(query.series)} AS s, ${field(query.x)} AS x, ${y} AS y`;
}

/** A numeric y: SQLite's json_extract keeps a JSON string a string. */
function numericY(db: Db): string {
  return db.dialect === "postgres" ? "y IS NOT NULL" : "typeof(y) IN ('integer', 'real')";
}

/**
 * Counts, in SQL, every result that finished before `floor`: per group, n, the sums of y − k and
 * (y − k)² (shifted by one of the values, so the variance does not cancel out), min and max.
 */
async function aggregateBefore(db: Db, query: PlotQuery, entry: Aggregate, floor: number): Promise<void> {
  const shiftParams = new SqlParams();
  const conditions = succeededIn(shiftParams, query.phase);
  const sample = await db.one<{ y: unknown }>(
    `SELECT y FROM (SELECT ${columns(db, shiftParams, query)} FROM tasks t WHERE ${conditions.join(" AND ")}) r
      WHERE ${numericY(db)} LIMIT 1`,
    shiftParams.values,
  );
  const shift = sample ? Number(sample.y) : 0;
  const params = new SqlParams();
  const where = [
    ...succeededIn(params, query.phase),
    `(t.finished_at IS NULL OR t.finished_at < ${params.add(floor)})`,
  ];
  const select = columns(db, params, query);
  const k = params.add(shift);
  const rows = await db.all<{
    f: unknown;
    s: unknown;
    x: unknown;
    n: number;
    sd: number;
    sdd: number;
    lo: number;
    hi: number;
  }>(
    `SELECT f, s, x, count(*) AS n, sum(y - ${k}) AS sd, sum((y - ${k}) * (y - ${k})) AS sdd, min(y) AS lo, max(y) AS hi
       FROM (SELECT ${select} FROM tasks t WHERE ${where.join(" AND ")}) r
      WHERE ${numericY(db)}
      GROUP BY f, s, x`,
    params.values,
  );
  for (const row of rows) {
    const n = Number(row.n);
    const sd = Number(row.sd);
    merge(entry, row, {
      n,
      mean: shift + sd / n,
      m2: Math.max(0, Number(row.sdd) - (sd * sd) / n),
      min: Number(row.lo),
      max: Number(row.hi),
    });
  }
}

/** Adds, one by one, results of tasks finished at or after `from` not counted yet. */
async function addRecent(db: Db, query: PlotQuery, entry: Aggregate, from: number): Promise<void> {
  const params = new SqlParams();
  const select = columns(db, params, query);
  // Through the finished_at index: the planner would otherwise walk every succeeded task.
  const where = [
    ...succeededIn(params, query.phase),
    `t.id IN (SELECT id FROM tasks WHERE finished_at >= ${params.add(from)})`,
  ];
  const rows = await db.all<{ id: number; at: number; f: unknown; s: unknown; x: unknown; y: unknown }>(
    `SELECT t.id, t.finished_at AS at, ${select} FROM tasks t WHERE ${where.join(" AND ")}`,
    params.values,
  );
  for (const row of rows) {
    const id = Number(row.id);
    if (entry.recent.has(id)) continue;
    entry.recent.set(id, Number(row.at));
    add(entry, row);
  }
}

function add(entry: Aggregate, row: { f: unknown; s: unknown; x: unknown; y: unknown }): void {
  const y =
    typeof row.y === "number"
      ? row.y
      : typeof row.y === "string" && row.y.trim() !== ""
        ? Number(row.y)
        : Number.NaN;
  if (!Number.isFinite(y)) return;
  merge(entry, row, { n: 1, mean: y, m2: 0, min: y, max: y });
}

/** Merges a batch's statistics into its group (Chan et al.'s pairwise update of Welford's sums). */
function merge(
  entry: Aggregate,
  row: { f: unknown; s: unknown; x: unknown },
  batch: { n: number; mean: number; m2: number; min: number; max: number },
): void {
  entry.used += batch.n;
  const f = typed(row.f);
  const s = typed(row.s);
  const x = typed(row.x);
  const key = `${keyOf(f)}\u0000${keyOf(s)}\u0000${keyOf(x)}`;
  const group = entry.groups.get(key);
  if (!group) {
    entry.groups.set(key, { f, s, x, ...batch });
    return;
  }
  const n = group.n + batch.n;
  const delta = batch.mean - group.mean;
  group.mean += (delta * batch.n) / n;
  group.m2 += batch.m2 + (delta * delta * group.n * batch.n) / n;
  group.n = n;
  if (batch.min < group.min) group.min = batch.min;
  if (batch.max > group.max) group.max = batch.max;
}

function keyOf(value: unknown): string {
  return typeof value === "string"
    ? `s${value}`
    : typeof value === "number"
      ? `n${value}`
      : JSON.stringify(value);
}

function shape(query: PlotQuery, entry: Aggregate): PlotData {
  const facets = new Map<
    string,
    { facet: unknown; series: Map<string, { series: unknown; points: PlotPoint[] }> }
  >();
  for (const group of entry.groups.values()) {
    const facetKey = keyOf(group.f);
    let facet = facets.get(facetKey);
    if (!facet) {
      facet = { facet: group.f, series: new Map() };
      facets.set(facetKey, facet);
    }
    const seriesKey = keyOf(group.s);
    let series = facet.series.get(seriesKey);
    if (!series) {
      series = { series: group.s, points: [] };
      facet.series.set(seriesKey, series);
    }
    series.points.push({
      x: group.x,
      n: group.n,
      mean: group.mean,
      std: group.n > 1 ? Math.sqrt(group.m2 / (group.n - 1)) : 0,
      min: group.min,
      max: group.max,
    });
  }
  return {
    query,
    used: entry.used,
    numericX: [...entry.groups.values()].every((group) => typeof group.x === "number"),
    facets: [...facets.values()]
      .sort((a, b) => compareValues(a.facet, b.facet))
      .map((facet) => ({
        facet: facet.facet,
        series: [...facet.series.values()]
          .sort((a, b) => compareValues(a.series, b.series))
          .map((series) => ({
            series: series.series,
            points: [...series.points].sort((a, b) => compareValues(a.x, b.x)),
          })),
      })),
  };
}

/** The plot's table: one row per point, the columns a spreadsheet wants. */
export function plotRows(plot: PlotData): { header: string[]; rows: unknown[][] } {
  const { query } = plot;
  const header = [
    ...(query.facet ? [query.facet] : []),
    ...(query.series ? [query.series] : []),
    query.x,
    "n",
    `${query.y}_mean`,
    `${query.y}_std`,
    `${query.y}_min`,
    `${query.y}_max`,
  ];
  const rows: unknown[][] = [];
  for (const facet of plot.facets)
    for (const series of facet.series)
      for (const point of series.points)
        rows.push([
          ...(query.facet ? [facet.facet] : []),
          ...(query.series ? [series.series] : []),
          point.x,
          point.n,
          point.mean,
          point.std,
          point.min,
          point.max,
        ]);
  return { header, rows };
}
