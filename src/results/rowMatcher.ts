import { canonicalText } from "../sweep/canonical.js";
import type { Params, ParamValue } from "../sweep/types.js";

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

export interface MatchableTask {
  id: number;
  params: Params;
}

export interface MatchedRow {
  taskId: number;
  metrics: Record<string, unknown>;
}

export interface MatchReport {
  matched: MatchedRow[];
  /** Rows naming parameter values no task of this dir has. */
  unmatched: number;
  /** Tasks that the CSV's columns cannot tell apart (a varying parameter has no column). */
  ambiguous: number;
}

/**
 * Finds which tasks of one output dir a results CSV already holds. Rows match by parameter
 * value (see canonicalValue). A parameter with no column matches when it is constant among the
 * dir's tasks — the original system left such columns out; tasks the columns cannot tell apart
 * are never guessed. Columns that are neither parameters, `phase` nor labsweep's metadata are
 * the row's metrics.
 */
export function matchCsvRows(
  tasks: readonly MatchableTask[],
  header: readonly string[],
  rows: readonly string[][],
): MatchReport {
  const paramNames = new Set<string>();
  for (const task of tasks) for (const name of Object.keys(task.params)) paramNames.add(name);
  const columnOf = new Map(header.map((name, index) => [name, index]));
  const keyColumns = [...paramNames].filter((name) => columnOf.has(name));
  const byKey = new Map<string, number>();
  const AMBIGUOUS = -1;
  for (const task of tasks) {
    const key = keyColumns.map((name) => canonicalText(task.params[name])).join("\u001f");
    const earlier = byKey.get(key);
    byKey.set(key, earlier === undefined || earlier === task.id ? task.id : AMBIGUOUS);
  }
  let ambiguous = 0;
  for (const id of byKey.values()) if (id === AMBIGUOUS) ambiguous++;
  const skip = new Set<string>(["phase", ...METADATA_COLUMNS, ...paramNames]);
  const metricColumns = header
    .map((name, index) => ({ name, index }))
    .filter((column) => !skip.has(column.name));
  const keyIndexes = keyColumns.map((name) => columnOf.get(name) as number);
  // An empty cell under a parameter that is constant in this dir is that constant: the row was
  // written before the column existed (labsweep appending to the original system's CSV adds the
  // column and pads older rows with ""), so it must match just as it did without the column.
  const constantKey = keyColumns.map((name) => constantText(tasks, name));
  const matched: MatchedRow[] = [];
  let unmatched = 0;
  for (const row of rows) {
    const key = keyIndexes
      .map((index, i) => {
        const cell = row[index] ?? "";
        return cell === "" ? (constantKey[i] ?? canonicalText(cell)) : cellKey(cell);
      })
      .join("\u001f");
    const taskId = byKey.get(key);
    if (taskId === undefined || taskId === AMBIGUOUS) {
      if (taskId === undefined) unmatched++;
      continue;
    }
    const metrics: Record<string, unknown> = {};
    for (const column of metricColumns) metrics[column.name] = cellValue(row[column.index] ?? "");
    matched.push({ taskId, metrics });
  }
  return { matched, unmatched, ambiguous };
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
function cellValue(cell: string): unknown {
  if (cell === "") return null;
  const number = Number(cell);
  return Number.isFinite(number) && /^[+-]?(\d|\.\d)/.test(cell.trim()) ? number : cell;
}
