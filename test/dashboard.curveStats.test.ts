/**
 * The Results view's curves are aggregated in the browser (src/dashboard/web/curveStats.js, a
 * plain ES module without DOM): mean ± sample std per step over every parameter not grouped on,
 * steps aligned exactly (a step only some tasks reached is averaged over those, with its n), and
 * a task's series split by attempt for its page.
 */
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "./helpers/cli.js";

interface Task {
  taskId?: number;
  params: Record<string, unknown>;
  steps: number[];
  values: number[];
}
interface Line {
  value: unknown;
  tasks: number;
  n: Array<number | null>;
  mean: Array<number | null>;
  std: Array<number | null>;
}
interface CurveStats {
  aggregateCurves(tasks: Task[], groupBy: string): { steps: number[]; lines: Line[] };
  varyingParams(tasks: Task[]): string[];
  splitByAttempt(series: { steps: number[]; values: number[]; attempts: number[] }): {
    steps: number[];
    lines: Array<{ attempt: number; values: Array<number | null> }>;
    takeovers: Array<{ attempt: number; step: number }>;
  };
}

// A browser module: loaded by its URL (it has no TypeScript declarations to import by name).
const stats = (await import(
  pathToFileURL(`${REPO_ROOT}/src/dashboard/web/curveStats.js`).href
)) as CurveStats;

function task(lr: number, seed: number, values: number[], steps = values.map((_, i) => i)): Task {
  return { params: { lr, seed, model: "mlp" }, steps, values };
}

describe("curves across tasks", () => {
  it("gives one line per value of the chosen parameter, mean ± sample std over the seeds at each step", () => {
    const tasks = [
      task(0.2, 1, [2, 1]),
      task(0.1, 1, [1, 0.5]),
      task(0.1, 2, [3, 0.7]),
      task(0.2, 2, [4, 3]),
      task(0.1, 3, [2, 0.6]),
    ];
    const { steps, lines } = stats.aggregateCurves(tasks, "lr");
    expect(steps).toEqual([0, 1]);
    expect(lines.map((line) => [line.value, line.tasks])).toEqual([
      [0.1, 3],
      [0.2, 2],
    ]);
    const [low, high] = lines as [Line, Line];
    expect(low.n).toEqual([3, 3]);
    expect(low.mean[0]).toBeCloseTo(2, 12);
    expect(low.std[0]).toBeCloseTo(1, 12); // 1, 3, 2: sample std 1
    expect(low.mean[1]).toBeCloseTo(0.6, 12);
    expect(low.std[1]).toBeCloseTo(0.1, 12);
    expect(high.mean).toEqual([3, 2]);
    expect(high.std[0]).toBeCloseTo(Math.SQRT2, 12);
  });

  it("averages a step only some tasks reached over those, and says how many (n); one value has std 0", () => {
    const tasks = [task(0.1, 1, [1, 2, 3]), task(0.1, 2, [3, 4]), task(0.1, 3, [5], [10])];
    const { steps, lines } = stats.aggregateCurves(tasks, "lr");
    expect(steps).toEqual([0, 1, 2, 10]);
    const [line] = lines as [Line];
    expect(line.n).toEqual([2, 2, 1, 1]);
    expect(line.mean).toEqual([2, 3, 3, 5]);
    expect(line.std[2]).toBe(0);
    expect(line.std[3]).toBe(0);
  });

  it("draws one line over every task when no parameter is chosen; skips values that are not finite", () => {
    const tasks = [task(0.1, 1, [1, Number.NaN]), task(0.2, 1, [3, 4])];
    const { lines } = stats.aggregateCurves(tasks, "");
    expect(lines).toHaveLength(1);
    expect((lines[0] as Line).n).toEqual([2, 1]);
    expect((lines[0] as Line).mean).toEqual([2, 4]);
  });

  it("orders lines as the server's plot does (none, numbers numerically, text); a task without the parameter is its own line", () => {
    const tasks = [
      { params: { width: 16 }, steps: [0], values: [1] },
      { params: { width: "wide" }, steps: [0], values: [1] },
      { params: { width: 4 }, steps: [0], values: [1] },
      { params: {}, steps: [0], values: [1] },
    ];
    expect(stats.aggregateCurves(tasks, "width").lines.map((line) => line.value)).toEqual([
      null,
      4,
      16,
      "wide",
    ]);
    expect(stats.varyingParams(tasks)).toEqual(["width"]);
  });

  it("names the parameters that vary, constant ones left out", () => {
    const tasks = [task(0.1, 1, [1]), task(0.1, 2, [1]), task(0.2, 1, [1])];
    expect(stats.varyingParams(tasks)).toEqual(["lr", "seed"]);
  });

  it("aggregates 500 tasks × 1,000 points, each step over its 100 seeds", () => {
    const tasks: Task[] = [];
    for (let lr = 0; lr < 5; lr++)
      for (let seed = 0; seed < 100; seed++)
        tasks.push(
          task(
            lr,
            seed,
            Array.from({ length: 1000 }, (_, step) => lr + step / 1000 + (seed % 2 ? 0.5 : -0.5)),
          ),
        );
    const { steps, lines } = stats.aggregateCurves(tasks, "lr");
    expect(steps).toHaveLength(1000);
    expect(lines).toHaveLength(5);
    const last = lines[4] as Line;
    expect(last.n[999]).toBe(100);
    expect(last.mean[999]).toBeCloseTo(4.999, 9);
    // ±0.5 in equal halves: sample std = 0.5 · sqrt(100 / 99).
    expect(last.std[0]).toBeCloseTo(0.5 * Math.sqrt(100 / 99), 9);
  });
});

describe("a task's series by attempt", () => {
  it("splits the points by the attempt that wrote them and marks where a later attempt took over", () => {
    const split = stats.splitByAttempt({
      steps: [0, 1, 2, 3, 4],
      values: [5, 4, 3, 2.5, 2],
      attempts: [1, 1, 2, 2, 2],
    });
    expect(split.steps).toEqual([0, 1, 2, 3, 4]);
    expect(split.lines).toEqual([
      { attempt: 1, values: [5, 4, null, null, null] },
      { attempt: 2, values: [null, null, 3, 2.5, 2] },
    ]);
    expect(split.takeovers).toEqual([{ attempt: 2, step: 2 }]);
  });

  it("has no marker for a single attempt", () => {
    const split = stats.splitByAttempt({ steps: [0, 1], values: [1, 2], attempts: [1, 1] });
    expect(split.lines).toHaveLength(1);
    expect(split.takeovers).toEqual([]);
  });
});
