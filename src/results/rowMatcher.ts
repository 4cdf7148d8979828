import type { Params } from "../sweep/types.js";
import {
  GIT_COLUMNS,
  METADATA_COLUMNS,
  metricColumns as metricColumnsOf,
  metricOfColumn,
  OOM_RETRIES_COLUMN,
  reservedColumns,
  usedColumn,
} from "./columns.js";
import { formatCell } from "./csvFile.js";
import { type MetricColumn, metricReaders } from "./metricCells.js";
import { taskKeys } from "./taskKeys.js";

export { METADATA_COLUMNS } from "./columns.js";
export { cellValue, type MetricColumn } from "./metricCells.js";

export interface MatchableTask {
  id: number;
  params: Params;
  /** The ledger already counts its row in this dir as on disk. (Default: false) */
  written?: boolean;
  /**
   * The ledger's metrics of a task that succeeded, needed only for tasks that share their
   * parameter values with another (sharedKeyTasks): they tell those tasks' rows apart.
   * (Default: unknown)
   */
  metrics?: Readonly<Record<string, unknown>>;
}

export interface MatchedRow {
  taskId: number;
  metrics: Record<string, unknown>;
}

export interface MatchReport {
  matched: MatchedRow[];
  /** Rows naming parameter values no task of this dir has. */
  unmatched: number;
  /**
   * Parameter values shared by several tasks (different commands, or a varying parameter without
   * a column) whose rows were left unmatched because some of those tasks never succeeded.
   */
  ambiguous: number;
}

/**
 * Finds which tasks of one output dir a results CSV already holds. Rows match by parameter
 * value (see canonicalValue). A parameter with no column matches when it is constant among the
 * dir's tasks — the original system left such columns out. Columns that are neither parameters,
 * `phase` nor labsweep's metadata are the row's metrics (a `metric_` column of a clashing name
 * back under its own name, see columns.ts).
 *
 * Tasks the columns cannot tell apart (the same parameters with different commands, or a varying
 * parameter without a column) share a key, and are never guessed: a row counts for one of them
 * only when it holds exactly that task's metrics (see settleGroup), so after a crash between
 * append and commit one row on disk settles one owed row, never two.
 */
export function matchCsvRows(
  tasks: readonly MatchableTask[],
  header: readonly string[],
  rows: readonly string[][],
): MatchReport {
  const keys = rowKeys(tasks, header);
  return matchRows(keys, rows, (task, row) => ({ taskId: task.id, metrics: keys.metricsOf(row) }));
}

/**
 * matchCsvRows on keys already made (rowKeys), reading each row once as it goes (readCsvRows):
 * `take` turns a matched row into what the caller keeps, as soon as the row is known to be its
 * task's (undefined: nothing). Rows are not kept, but for keys several tasks share, until the end.
 * In the order of the rows, a key's at its first row.
 */
export function matchRows<T extends MatchableTask, R>(
  keys: RowKeys<T>,
  rows: Iterable<readonly string[]>,
  take: (task: T, row: readonly string[]) => R | undefined,
): { matched: R[]; unmatched: number; ambiguous: number } {
  const matched: R[] = [];
  // Keys several tasks share: all their rows, and where in `matched` their first row fell.
  const shared = new Map<T[], { rows: Array<readonly string[]>; at: number }>();
  const seen = new Set<T[]>();
  let unmatched = 0;
  for (const row of rows) {
    const group = keys.groupOf(row);
    if (group === undefined) unmatched++;
    else if (group.length > 1) {
      const found = shared.get(group);
      if (found === undefined) shared.set(group, { rows: [row], at: matched.length });
      else found.rows.push(row);
    } else if (!seen.has(group)) {
      // One task: its first row is its row; a later one is a duplicate of it.
      seen.add(group);
      const value = take(group[0] as T, row);
      if (value !== undefined) matched.push(value);
    }
  }
  if (shared.size === 0) return { matched, unmatched, ambiguous: 0 };
  let ambiguous = 0;
  const settledAt = new Map<number, R[]>();
  for (const [group, { rows: keyRows, at }] of shared) {
    const { settled, unsure } = settleGroup(group, keyRows, keys.metricColumns, keys.reserved);
    if (unsure) ambiguous++;
    const values = settledAt.get(at) ?? [];
    settledAt.set(at, values);
    for (const { task, row } of settled) {
      const value = take(task, row);
      if (value !== undefined) values.push(value);
    }
  }
  const ordered: R[] = [];
  for (let index = 0; index <= matched.length; index++) {
    ordered.push(...(settledAt.get(index) ?? []));
    if (index < matched.length) ordered.push(matched[index] as R);
  }
  return { matched: ordered, unmatched, ambiguous };
}

/** A row and the task it is. */
interface RowMatch<T extends MatchableTask> {
  task: T;
  row: readonly string[];
}

/** The matching rules for one header (rowKeys). */
export interface RowKeys<T extends MatchableTask> {
  /** Tasks by key (taskKeys.ts); a task placed twice in the dir is in its group once. */
  groups: Map<number | string, T[]>;
  /** The group of tasks a row's parameter cells name, compared by canonical value. */
  groupOf: (row: readonly string[]) => T[] | undefined;
  metricColumns: MetricColumn[];
  /** The columns labsweep writes itself for these tasks (columns.ts). */
  reserved: ReadonlySet<string>;
  /** A row's metrics: numbers as numbers, empty as null, anything else as text (cellValue). */
  metricsOf: (row: readonly string[]) => Record<string, unknown>;
  /** `JSON.stringify(metricsOf(row))`, without the object in between. */
  metricsJson: (row: readonly string[]) => string;
}

/**
 * The matching rules, for one header: tasks grouped by key, a row's key (its parameter cells,
 * compared by canonical value), and which columns hold metrics. matchCsvRows and `verify` share
 * them, so a row counts for the same tasks in both.
 */
export function rowKeys<T extends MatchableTask>(tasks: readonly T[], header: readonly string[]): RowKeys<T> {
  const paramNames = new Set<string>();
  for (const task of tasks) for (const name of Object.keys(task.params)) paramNames.add(name);
  const columnOf = new Map(header.map((name, index) => [name, index]));
  const keyColumns = [...paramNames].filter((name) => columnOf.has(name));
  const { groups, groupOf } = taskKeys(
    tasks,
    keyColumns,
    keyColumns.map((name) => columnOf.get(name) as number),
  );
  const reserved = reservedColumns(paramNames);
  const oomColumns = [OOM_RETRIES_COLUMN, ...[...paramNames].map(usedColumn)];
  const skip = new Set<string>(["phase", ...METADATA_COLUMNS, ...GIT_COLUMNS, ...oomColumns, ...paramNames]);
  const metricColumns: MetricColumn[] = header
    .map((name, index) => ({ name: metricOfColumn(name, reserved), column: name, index }))
    .filter((column) => !skip.has(column.column));
  return { groups, groupOf, metricColumns, reserved, ...metricReaders(metricColumns) };
}

/** The tasks whose group (rowKeys' `groups`) holds another task too. */
export function sharedKeyTasks<T extends MatchableTask>(groups: ReadonlyMap<unknown, readonly T[]>): T[] {
  const tasks: T[] = [];
  for (const group of groups.values()) if (group.length > 1) tasks.push(...group);
  return tasks;
}

/**
 * Which tasks of one key the key's rows are. One task: every row is its row (a duplicate row is
 * still that one task's). Several (equal parameters, different commands): a row is a task's
 * only if it holds exactly the metrics the ledger has for it — rows the ledger already counts go
 * to its written tasks first, the rest to tasks whose rows are owed (a crashed writer's appends),
 * one row each. A task that never succeeded is never completed from such rows: which one a row
 * is would be a guess (`unsure`).
 */
function settleGroup<T extends MatchableTask>(
  group: readonly T[],
  rows: ReadonlyArray<readonly string[]>,
  metricColumns: ReadonlyArray<{ column: string; index: number }>,
  reserved: ReadonlySet<string>,
): { settled: Array<RowMatch<T>>; unsure: boolean } {
  if (group.length === 1)
    return { settled: [{ task: group[0] as T, row: rows[0] as readonly string[] }], unsure: false };
  const spare = [...rows];
  const take = (task: MatchableTask): readonly string[] | null => {
    const index = spare.findIndex((row) => holdsMetrics(row, task, metricColumns, reserved));
    return index === -1 ? null : (spare.splice(index, 1)[0] as readonly string[]);
  };
  for (const task of group) if (task.written) take(task);
  const settled: Array<RowMatch<T>> = [];
  for (const task of [...group].sort((a, b) => a.id - b.id)) {
    if (task.written || task.metrics === undefined) continue;
    const row = take(task);
    if (row !== null) settled.push({ task, row });
  }
  const unsure = spare.length > 0 && group.some((task) => !task.written && task.metrics === undefined);
  return { settled, unsure };
}

/** Whether a row's metric cells are exactly what the writer writes for this task's metrics. */
function holdsMetrics(
  row: readonly string[],
  task: MatchableTask,
  metricColumns: ReadonlyArray<{ column: string; index: number }>,
  reserved: ReadonlySet<string>,
): boolean {
  if (task.metrics === undefined) return false;
  const columns = metricColumnsOf(Object.keys(task.metrics), reserved);
  const expected = new Map<string, string>();
  for (const [name, value] of Object.entries(task.metrics))
    expected.set(columns.get(name) as string, formatCell(value));
  return metricColumns.every((column) => (row[column.index] ?? "") === (expected.get(column.column) ?? ""));
}
