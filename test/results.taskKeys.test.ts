import { describe, expect, it } from "vitest";
import { taskKeys } from "../src/results/taskKeys.js";
import type { Params } from "../src/sweep/types.js";

// taskKeys is rowMatcher's keying: a row's parameter cells name the tasks whose values they are,
// compared by canonical value, whatever the number of columns and values.

function tasks(params: Params[]) {
  return params.map((values, index) => ({ id: index + 1, params: values }));
}

function ids(group: Array<{ id: number }> | undefined): number[] | undefined {
  return group?.map((task) => task.id);
}

describe("taskKeys", () => {
  it("finds tasks by canonical value: 4 = 4.0 = '4', True = true, '' = null, inf, nan, lists", () => {
    const keyed = taskKeys(
      tasks([
        { n: 4, flag: true, note: null, x: Number.POSITIVE_INFINITY, list: [1, 2] },
        { n: "4.5", flag: false, note: "a", x: Number.NaN, list: [] },
      ]),
      ["n", "flag", "note", "x", "list"],
      [0, 1, 2, 3, 4],
    );
    expect(ids(keyed.groupOf(["4.0", "True", "", "inf", "[1, 2]"]))).toEqual([1]);
    expect(ids(keyed.groupOf(["4", "true", "", "Infinity", "[1,2]"]))).toEqual([1]);
    expect(ids(keyed.groupOf(["4.50", "False", "a", "NaN", "[]"]))).toEqual([2]);
    expect(keyed.groupOf(["4", "True", "", "inf", "[2, 1]"])).toBeUndefined();
    expect(keyed.groupOf(["5", "True", "", "inf", "[1, 2]"])).toBeUndefined();
  });

  it("reads an empty cell as the value its column has for every task, else as null", () => {
    const keyed = taskKeys(
      tasks([
        { a: 1, b: "x", c: null },
        { a: 1, b: "y", c: 3 },
      ]),
      ["a", "b", "c"],
      [0, 1, 2],
    );
    expect(ids(keyed.groupOf(["", "x", ""]))).toEqual([1]);
    expect(keyed.groupOf(["1", "", ""])).toBeUndefined();
    expect(ids(keyed.groupOf(["1", "y", "3.0"]))).toEqual([2]);
  });

  it("groups tasks with equal values, each task once, and short rows read as empty cells", () => {
    const keyed = taskKeys(
      [
        { id: 1, params: { a: 1 } },
        { id: 2, params: { a: 1.0 } },
        { id: 1, params: { a: 1 } },
        { id: 3, params: { a: 2 } },
      ],
      ["a"],
      [2],
    );
    expect([...keyed.groups.values()].map(ids)).toEqual([[1, 2], [3]]);
    expect(ids(keyed.groupOf(["", "", "1"]))).toEqual([1, 2]);
    expect(ids(keyed.groupOf([]))).toBeUndefined();
  });

  it("keeps every task apart when its columns have more combinations than a number holds", () => {
    // 4 columns of 10,000 values each: 10^16 combinations, past 2^53.
    const count = 10_000;
    const all = tasks(Array.from({ length: count }, (_, i) => ({ a: i, b: `b${i}`, c: i / 8, d: -i })));
    const keyed = taskKeys(all, ["a", "b", "c", "d"], [0, 1, 2, 3]);
    expect(keyed.groups.size).toBe(count);
    for (let i = 0; i < count; i += 97) {
      expect(ids(keyed.groupOf([`${i}.0`, `b${i}`, String(i / 8), String(-i)]))).toEqual([i + 1]);
      expect(keyed.groupOf([String(i), `b${i}`, String(i / 8), String(-i - 1)])).toBeUndefined();
    }
  });

  it("keeps every point of a grid apart", () => {
    const grid = tasks(
      Array.from({ length: 60 }, (_, i) => ({ a: i % 4, b: Math.floor(i / 4) % 3, c: Math.floor(i / 12) })),
    );
    const keyed = taskKeys(grid, ["a", "b", "c"], [0, 1, 2]);
    expect(keyed.groups.size).toBe(60);
    for (const task of grid) {
      const cells = [String(task.params.a), String(task.params.b), String(task.params.c)];
      expect(ids(keyed.groupOf(cells))).toEqual([task.id]);
    }
  });
});
