import { canonicalText } from "../sweep/canonical.js";
import type { Params, ParamValue } from "../sweep/types.js";
import {
  METADATA_COLUMNS,
  metricColumns as metricColumnsOf,
  metricOfColumn,
  OOM_RETRIES_COLUMN,
  reservedColumns,
  usedColumn,
} from "./columns.js";
import { formatCell } from "./csvFile.js";

export { METADATA_COLUMNS } from "./columns.js";

export interface MatchableTask {
  id: number;
  params: Params;
  /** The ledger already counts its row in this dir as on disk. (Default: false) */
  written?: boolean;
  /**
   * The ledger's metrics of a task that succeeded, needed only for tasks that share their
   * parameter values with another (tasksSharingKeys): they tell those tasks' rows apart.
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
  const { groups, keyOf, metricColumns, reserved } = rowKeys(tasks, header);
  const rowsByKey = new Map<string, string[][]>();
  let unmatched = 0;
  for (const row of rows) {
    const key = keyOf(row);
    if (!groups.has(key)) {
      unmatched++;
      continue;
    }
    const list = rowsByKey.get(key) ?? [];
    if (list.length === 0) rowsByKey.set(key, list);
    list.push(row);
  }
  // fromEntries, not assignment: a metric named "__proto__" must stay a metric.
  const metricsOf = (row: string[]): Record<string, unknown> =>
    Object.fromEntries(metricColumns.map((column) => [column.name, cellValue(row[column.index] ?? "")]));
  const matched: MatchedRow[] = [];
  let ambiguous = 0;
  for (const [key, keyRows] of rowsByKey) {
    const group = groups.get(key) as MatchableTask[];
    const { settled, unsure } = settleGroup(group, keyRows, metricColumns, reserved);
    if (unsure) ambiguous++;
    for (const { task, row } of settled) matched.push({ taskId: task.id, metrics: metricsOf(row) });
  }
  return { matched, unmatched, ambiguous };
}

/** A metric column of a results header: the metric it holds, its column name and index. */
export interface MetricColumn {
  name: string;
  column: string;
  index: number;
}

/**
 * The matching rules, for one header: tasks grouped by key, a row's key (its parameter cells,
 * compared by canonical value), and which columns hold metrics. matchCsvRows and `verify` share
 * them, so a row counts for the same tasks in both.
 */
export function rowKeys<T extends MatchableTask>(tasks: readonly T[], header: readonly string[]) {
  const { paramNames, keyColumns, groups } = groupByKey(tasks, header);
  const columnOf = new Map(header.map((name, index) => [name, index]));
  const reserved = reservedColumns(paramNames);
  const oomColumns = [OOM_RETRIES_COLUMN, ...[...paramNames].map(usedColumn)];
  const skip = new Set<string>(["phase", ...METADATA_COLUMNS, ...oomColumns, ...paramNames]);
  const metricColumns: MetricColumn[] = header
    .map((name, index) => ({ name: metricOfColumn(name, reserved), column: name, index }))
    .filter((column) => !skip.has(column.column));
  const keyIndexes = keyColumns.map((name) => columnOf.get(name) as number);
  // An empty cell under a parameter that is constant in this dir is that constant: the row was
  // written before the column existed (labsweep appending to the original system's CSV adds the
  // column and pads older rows with ""), so it must match just as it did without the column.
  const constantKey = keyColumns.map((name) => constantText(tasks, name));
  const keyOf = (row: readonly string[]): string =>
    keyIndexes
      .map((index, i) => {
        const cell = row[index] ?? "";
        return cell === "" ? (constantKey[i] ?? canonicalText(cell)) : cellKey(cell);
      })
      .join("\u001f");
  return { groups, keyOf, metricColumns, reserved };
}

/** The ids of tasks whose parameter columns in `header` equal another task's. */
export function tasksSharingKeys(tasks: readonly MatchableTask[], header: readonly string[]): number[] {
  const ids: number[] = [];
  for (const group of groupByKey(tasks, header).groups.values())
    if (group.length > 1) for (const task of group) ids.push(task.id);
  return ids;
}

/** Tasks by the canonical text of their values under the header's parameter columns. */
function groupByKey<T extends MatchableTask>(tasks: readonly T[], header: readonly string[]) {
  const paramNames = new Set<string>();
  for (const task of tasks) for (const name of Object.keys(task.params)) paramNames.add(name);
  const present = new Set(header);
  const keyColumns = [...paramNames].filter((name) => present.has(name));
  const groups = new Map<string, T[]>();
  for (const task of tasks) {
    const key = keyColumns.map((name) => canonicalText(task.params[name])).join("\u001f");
    const group = groups.get(key) ?? [];
    if (group.length === 0) groups.set(key, group);
    // A task listed twice (placed by two phases in this dir) is one task.
    if (!group.some((other) => other.id === task.id)) group.push(task);
  }
  return { paramNames, keyColumns, groups };
}

/**
 * Which tasks of one key the key's rows are. One task: every row is its row (a duplicate row is
 * still that one task's). Several (equal parameters, different commands): a row is a task's
 * only if it holds exactly the metrics the ledger has for it — rows the ledger already counts go
 * to its written tasks first, the rest to tasks whose rows are owed (a crashed writer's appends),
 * one row each. A task that never succeeded is never completed from such rows: which one a row
 * is would be a guess (`unsure`).
 */
function settleGroup(
  group: readonly MatchableTask[],
  rows: readonly string[][],
  metricColumns: ReadonlyArray<{ column: string; index: number }>,
  reserved: ReadonlySet<string>,
): { settled: Array<{ task: MatchableTask; row: string[] }>; unsure: boolean } {
  if (group.length === 1)
    return { settled: [{ task: group[0] as MatchableTask, row: rows[0] as string[] }], unsure: false };
  const spare = [...rows];
  const take = (task: MatchableTask): string[] | null => {
    const index = spare.findIndex((row) => holdsMetrics(row, task, metricColumns, reserved));
    return index === -1 ? null : (spare.splice(index, 1)[0] as string[]);
  };
  for (const task of group) if (task.written) take(task);
  const settled: Array<{ task: MatchableTask; row: string[] }> = [];
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

/**
 * A parameter cell's canonical text. List and map values are written as JSON (formatCell), so a
 * cell that parses as a JSON array or object compares as that value, not as a string.
 */
function cellKey(cell: string): string {
  const trimmed = cell.trim();
  if (trimmed.startsWith("[") || trimmed.startsWith("{")) {
    try {
      return canonicalText(JSON.parse(trimmed) as ParamValue);
    } catch {
      // not JSON: an ordinary string
    }
  }
  return canonicalText(cell);
}

/** The canonical text of `name` when every task has the same value for it, else undefined. */
function constantText(tasks: readonly MatchableTask[], name: string): string | undefined {
  let constant: string | undefined;
  for (const task of tasks) {
    const text = canonicalText(task.params[name]);
    if (constant === undefined) constant = text;
    else if (text !== constant) return undefined;
  }
  return constant;
}

/** A CSV cell as a metric value: numbers as numbers, empty as null, anything else as text. */
export function cellValue(cell: string): unknown {
  if (cell === "") return null;
  const number = Number(cell);
  return Number.isFinite(number) && /^[+-]?(\d|\.\d)/.test(cell.trim()) ? number : cell;
}
