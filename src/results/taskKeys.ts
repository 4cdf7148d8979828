import { canonicalText } from "../sweep/canonical.js";
import type { Params, ParamValue } from "../sweep/types.js";

// Tasks grouped by their values under a results file's parameter columns, and the group a row's
// cells there name: the matching rule of rowMatcher.ts, made fast for 100,000 rows. Values are
// compared by canonical text (canonical.ts: 4, 4.0 and "4" are one value). Each column's texts
// are numbered, so a key is a number made of those numbers (a string of them only when there
// are too many combinations for a number to hold exactly), and a row's cells are looked up
// number by number: no key text is built per task or row.

/** What a task needs to be keyed. */
export interface KeyedTask {
  id: number;
  params: Params;
}

export interface TaskKeys<T extends KeyedTask> {
  /** Tasks by key, in the order of their first task; a task listed twice is in its group once. */
  groups: Map<number | string, T[]>;
  /** The group whose values a row's cells are; undefined when no task has them. */
  groupOf: (row: readonly string[]) => T[] | undefined;
}

/**
 * Groups `tasks` by their values under `columns` (parameter names), read from a row at
 * `indexes` (the columns' places in the header). An empty cell under a parameter that is
 * constant among the tasks is that constant: the row was written before the column existed
 * (labsweep appending to the original system's CSV adds the column and pads older rows with ""),
 * so it must match just as it did without the column.
 */
export function taskKeys<T extends KeyedTask>(
  tasks: readonly T[],
  columns: readonly string[],
  indexes: readonly number[],
): TaskKeys<T> {
  const numbering = columns.map(() => new TextNumbers());
  // Each task's number in each column, then its key: the numbers as digits of mixed radix.
  const width = columns.length;
  const numbers = new Int32Array(tasks.length * width);
  for (let t = 0; t < tasks.length; t++) {
    const params = (tasks[t] as T).params;
    for (let i = 0; i < width; i++)
      numbers[t * width + i] = (numbering[i] as TextNumbers).numberOfValue(params[columns[i] as string]);
  }
  const key = keyMaker(numbering.map((texts) => texts.size));
  const groups = new Map<number | string, T[]>();
  for (let t = 0; t < tasks.length; t++) {
    const task = tasks[t] as T;
    const taskKey = key(numbers, t * width);
    const group = groups.get(taskKey);
    if (group === undefined) groups.set(taskKey, [task]);
    // A task listed twice (placed by two phases in this dir) is one task.
    else if (!group.some((other) => other.id === task.id)) group.push(task);
  }
  const cellNumbers = numbering.map((texts) => texts.cellNumbers());
  const digits = new Int32Array(width);
  const groupOf = (row: readonly string[]): T[] | undefined => {
    for (let i = 0; i < digits.length; i++) {
      const number = (cellNumbers[i] as (cell: string) => number)(row[indexes[i] as number] ?? "");
      if (number < 0) return undefined;
      digits[i] = number;
    }
    return groups.get(key(digits, 0));
  };
  return { groups, groupOf };
}

/** One column's canonical texts, numbered from 0 in the order first seen. */
class TextNumbers {
  private readonly numbers = new Map<string, number>();
  private readonly texts: string[] = [];
  private readonly values = new Map<unknown, number>();

  get size(): number {
    return this.texts.length;
  }

  /** A task's value's number, numbering its text if new. */
  numberOfValue(value: ParamValue | undefined): number {
    const known = this.values.get(value);
    if (known !== undefined) return known;
    const text = canonicalText(value);
    let number = this.numbers.get(text);
    if (number === undefined) {
      number = this.texts.length;
      this.numbers.set(text, number);
      this.texts.push(text);
    }
    // Lists and maps are new objects every time: only plain values are worth remembering.
    if (this.values.size < MEMO_LIMIT && (value === null || typeof value !== "object"))
      this.values.set(value, number);
    return number;
  }

  /** A cell's number (-1: no task has its value), the cell's text made canonical once per cell. */
  cellNumbers(): (cell: string) => number {
    const constant = this.texts.length === 1 ? this.texts[0] : undefined;
    const cells = new Map<string, number>();
    return (cell) => {
      let number = cells.get(cell);
      if (number === undefined) {
        number = this.numbers.get(cell === "" ? (constant ?? canonicalText(cell)) : cellText(cell)) ?? -1;
        if (cells.size < MEMO_LIMIT) cells.set(cell, number);
      }
      return number;
    };
  }
}

/** Enough for the values a grid repeats; past it values are made canonical each time. */
const MEMO_LIMIT = 100_000;

/**
 * The key of one set of column numbers, `numbers[at…]`: a number when every combination fits
 * below 2^53 (each column a digit of mixed radix, so two sets never share a key), else the
 * numbers as text.
 */
function keyMaker(sizes: readonly number[]): (numbers: Int32Array, at: number) => number | string {
  const width = sizes.length;
  const combinations = sizes.reduce((product, size) => product * Math.max(size, 1), 1);
  if (combinations > Number.MAX_SAFE_INTEGER)
    return (numbers, at) => numbers.subarray(at, at + width).join(",");
  return (numbers, at) => {
    let key = 0;
    for (let i = 0; i < width; i++) key = key * (sizes[i] as number) + (numbers[at + i] as number);
    return key;
  };
}

/**
 * A parameter cell's canonical text. List and map values are written as JSON (formatCell), so a
 * cell that parses as a JSON array or object compares as that value, not as a string.
 */
function cellText(cell: string): string {
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
