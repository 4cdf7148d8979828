import type { GitState, TaskUsage } from "../protocol/interfaces.js";
import { formatCell } from "./csvFile.js";

/**
 * How a task becomes the columns of a results row: `phase`, its parameters, its metrics, then
 * the run metadata below. One place decides which column a metric lands in, for the results
 * writer, `labsweep export` and the resume scan reading a row back.
 */

/** Columns labsweep adds after the metrics; never parameters or metrics when read back. */
export const METADATA_COLUMNS = [
  "wall_seconds",
  "peak_rss_mb",
  "gpu_util_mean",
  "gpu_mem_peak_mb",
  "energy_wh",
  "attempts",
  "host",
  "gpu_ids",
] as const;

/**
 * The metadata columns of a phase with `on_oom`, after the ones above: the value of its parameter
 * that succeeded (`<param>_used`; the parameter's own column keeps the declared value) and how
 * many out-of-memory retries it took.
 */
export const OOM_RETRIES_COLUMN = "oom_retries";
export function usedColumn(param: string): string {
  return `${param}_used`;
}

/**
 * The provenance columns, after the others, of rows whose code ran in a git repository: the
 * commit, `true`/`false` for uncommitted changes to tracked files, and the SHA-256 of that diff
 * (blank when clean), so rows that ran the same uncommitted code share it. A file gains them with
 * its first such row (csvFile.ts adds columns to an existing file, older rows left blank).
 */
export const GIT_COLUMNS = ["git_commit", "git_dirty", "git_diff_sha256"] as const;

/** The provenance columns' values; all null without provenance. */
export function gitMetadata(git: GitState | null | undefined): {
  git_commit: string | null;
  git_dirty: boolean | null;
  git_diff_sha256: string | null;
} {
  return {
    git_commit: git?.commit ?? null,
    git_dirty: git ? git.dirty : null,
    git_diff_sha256: git?.diffSha256 ?? null,
  };
}

/** What a metric whose name clashes with a column labsweep writes itself is prefixed with. */
export const METRIC_PREFIX = "metric_";

/**
 * The column of each of one row's metrics, in the metrics' order. `reserved` holds the names of
 * the columns labsweep writes itself (`phase`, the parameters, the metadata). A metric named like
 * one of them — or like one with `metric_` in front, any number of times — is written under its
 * name with one more `metric_` in front: `phase` → `metric_phase`, `metric_phase` →
 * `metric_metric_phase`. Why the second rule: without it a task reporting both `phase` and
 * `metric_phase` would have two metrics for one column; with it the mapping depends only on the
 * metric's own name, so one metric lands in one column in every row of a dir. Should a parameter
 * itself be named like the result, `metric_` is added until the column is free.
 */
export function metricColumns(metrics: Iterable<string>, reserved: ReadonlySet<string>): Map<string, string> {
  const names = [...metrics];
  const taken = new Set(reserved);
  for (const name of names) if (!clashes(name, reserved)) taken.add(name);
  const columns = new Map<string, string>();
  for (const name of names) {
    if (!clashes(name, reserved)) {
      columns.set(name, name);
      continue;
    }
    let column = METRIC_PREFIX + name;
    while (taken.has(column)) column = METRIC_PREFIX + column;
    taken.add(column);
    columns.set(name, column);
  }
  return columns;
}

/** The metric a column read back from a results CSV holds: metricColumns undone. */
export function metricOfColumn(column: string, reserved: ReadonlySet<string>): string {
  if (!column.startsWith(METRIC_PREFIX)) return column;
  const name = column.slice(METRIC_PREFIX.length);
  return clashes(name, reserved) ? name : column;
}

/** Whether `name`, less any number of leading `metric_`, is a reserved column. */
function clashes(name: string, reserved: ReadonlySet<string>): boolean {
  for (let base = name; ; base = base.slice(METRIC_PREFIX.length)) {
    if (reserved.has(base)) return true;
    if (!base.startsWith(METRIC_PREFIX)) return false;
  }
}

/**
 * The columns labsweep writes itself for rows with these parameters (the clash set): with the
 * on_oom columns any parameter could have, so a metric's column depends on names alone.
 */
export function reservedColumns(params: Iterable<string>, extra: readonly string[] = []): Set<string> {
  const names = [...params];
  return new Set<string>([
    "phase",
    ...extra,
    ...names,
    ...METADATA_COLUMNS,
    ...GIT_COLUMNS,
    OOM_RETRIES_COLUMN,
    ...names.map(usedColumn),
  ]);
}

/** What the metadata columns are made of. */
export interface RunMetadata {
  wallSeconds: number | null;
  attempts: number;
  host: string | null;
  gpuIds: string | null;
  /** Null when the task was not sampled (found in a CSV, or run before sampling existed). */
  usage: TaskUsage | null;
  /** What on_oom did: its parameter, the value that succeeded, the retries. (Default: no on_oom) */
  oom?: { param: string; used: unknown; retries: number } | null;
  /** The provenance of the code it ran. (Default: none: no git columns) */
  git?: GitState | null;
}

/**
 * The metadata columns' values. Wall time is rounded to the millisecond: it is computed (ms /
 * 1000), and unrounded it prints as float noise (0.5045518299999999). What was not measured is
 * blank, never 0: a task that ended before its first sample has no peak RSS (ledgers from before
 * peak_rss_mb could be null hold 0 with `samples: 0`).
 */
export function metadataValues(
  run: RunMetadata,
): Record<(typeof METADATA_COLUMNS)[number], unknown> & Record<string, unknown> {
  const usage = run.usage;
  const sampled = usage !== null && usage.samples > 0;
  const oom = run.oom
    ? { [usedColumn(run.oom.param)]: run.oom.used, [OOM_RETRIES_COLUMN]: run.oom.retries }
    : {};
  return {
    wall_seconds: run.wallSeconds === null ? null : Math.round(run.wallSeconds * 1000) / 1000,
    peak_rss_mb: sampled ? usage.peak_rss_mb : null,
    gpu_util_mean: usage?.gpu_util_mean ?? null,
    gpu_mem_peak_mb: usage?.gpu_mem_peak_mb ?? null,
    energy_wh: usage?.energy_wh ?? null,
    attempts: run.attempts,
    host: run.host,
    gpu_ids: run.gpuIds,
    ...oom,
    ...(run.git ? gitMetadata(run.git) : {}),
  };
}

/** One task as a row of a results table. */
export interface TableRow {
  /** The values of the table's leading columns, in order. */
  leading: unknown[];
  params: Readonly<Record<string, unknown>>;
  metrics: Readonly<Record<string, unknown>>;
  /** The metadata columns' values, as metadataValues makes them. */
  metadata: Readonly<Record<string, unknown>>;
}

/** What a parameter named like a leading column (export's `task_id`, `phases`) is prefixed with. */
export const PARAM_PREFIX = "param_";

/**
 * The column of each parameter after `leading` columns: its name, or `param_NAME` for one named
 * like a leading column (`param_` added until the name is free).
 */
export function paramColumnsOf(params: Iterable<string>, leading: readonly string[]): Map<string, string> {
  const names = [...params];
  const taken = new Set([...leading, ...names]);
  const columns = new Map<string, string>();
  for (const name of names) {
    let column = name;
    if (leading.includes(name)) while (taken.has(column)) column = PARAM_PREFIX + column;
    taken.add(column);
    columns.set(name, column);
  }
  return columns;
}

/**
 * Rows of tasks as CSV cells: the leading columns, the parameters (in first-seen order), the
 * metrics (each under the column metricColumns gives it, so none is dropped or overwrites
 * another cell), then the metadata columns no parameter is named like. The results writer and
 * `labsweep export` lay out their tables here, so both have the same columns in the same order.
 * A parameter named like a leading column is written as `param_NAME`: the leading column (the
 * task's id in export) must stay what it says, and a header must not hold one name twice.
 */
export function resultTable(
  leading: readonly string[],
  rows: readonly TableRow[],
): { header: string[]; rows: string[][] } {
  const params = new Set<string>();
  for (const row of rows) for (const name of Object.keys(row.params)) params.add(name);
  const paramColumns = paramColumnsOf(params, leading);
  const reserved = reservedColumns(paramColumns.values(), leading);
  const metricsByRow = rows.map((row) => metricColumns(Object.keys(row.metrics), reserved));
  const metrics = new Set<string>();
  for (const columns of metricsByRow) for (const column of columns.values()) metrics.add(column);
  const metadata = [...METADATA_COLUMNS, ...oomColumnsOf(rows, params), ...gitColumnsOf(rows)].filter(
    (name) => !params.has(name),
  );
  const header = [...leading, ...paramColumns.values(), ...metrics, ...metadata];
  const cells = rows.map((row, index) => {
    const byColumn = new Map<string, unknown>(leading.map((name, i) => [name, row.leading[i]]));
    for (const name of metadata) byColumn.set(name, row.metadata[name]);
    for (const [name, value] of Object.entries(row.params))
      byColumn.set(paramColumns.get(name) as string, value);
    const columns = metricsByRow[index] as Map<string, string>;
    for (const [name, value] of Object.entries(row.metrics)) byColumn.set(columns.get(name) as string, value);
    return header.map((column) => formatCell(byColumn.get(column)));
  });
  return { header, rows: cells };
}

/** The provenance columns, where some row ran in a git repository. */
function gitColumnsOf(rows: readonly TableRow[]): string[] {
  return rows.some((row) => row.metadata.git_commit != null) ? [...GIT_COLUMNS] : [];
}

/** The on_oom metadata columns some row has values for: `<param>_used`, then `oom_retries`. */
function oomColumnsOf(rows: readonly TableRow[], params: ReadonlySet<string>): string[] {
  const candidates = [...[...params].map(usedColumn), OOM_RETRIES_COLUMN];
  return candidates.filter((name) => rows.some((row) => row.metadata[name] !== undefined));
}
