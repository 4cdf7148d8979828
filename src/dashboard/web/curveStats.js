// Curves across tasks, aggregated in the browser: one metric's series of many tasks (GET
// /api/v1/metrics/NAME/series) → per value of a chosen parameter, mean ± std at each step over
// every other parameter (seeds, typically), as the Results plot aggregates final metrics
// (ledger/reads/plot.ts). Pure: no DOM, so it is tested in Node too.

/** Orders parameter values as the server's plot does (ledger/reads/values.ts): none, numbers, text. */
export function compareValues(a, b) {
  if (typeof a === "number" && typeof b === "number") return a - b;
  if (a === null || a === undefined) return b === null || b === undefined ? 0 : -1;
  if (b === null || b === undefined) return 1;
  if (typeof a === "number") return -1;
  if (typeof b === "number") return 1;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

/** Parameter names whose value differs between the tasks, in first-seen order. */
export function varyingParams(tasks) {
  const first = new Map();
  const varies = new Set();
  for (const task of tasks)
    for (const [name, value] of Object.entries(task.params ?? {})) {
      const key = JSON.stringify(value);
      if (!first.has(name)) first.set(name, key);
      else if (first.get(name) !== key) varies.add(name);
    }
  // A parameter some tasks lack varies too.
  for (const task of tasks)
    for (const name of first.keys()) if (!(name in (task.params ?? {}))) varies.add(name);
  return [...first.keys()].filter((name) => varies.has(name));
}

/**
 * One line per value of `groupBy` (one line when it is empty): at each step, n, the mean and
 * the sample standard deviation (n − 1; 0 for one value) of the metric over the group's tasks
 * that have that step. Steps are aligned exactly: a step only some tasks reached is averaged
 * over those, and its n says how many. Welford's update per value: one pass, numerically stable.
 * Returns { steps, lines: [{ value, tasks, n, mean, std }] } with arrays parallel to `steps`
 * (null where the line has no value at that step).
 */
export function aggregateCurves(tasks, groupBy) {
  const groups = new Map();
  const allSteps = new Set();
  for (const task of tasks) {
    const value = groupBy ? (task.params?.[groupBy] ?? null) : null;
    const key = JSON.stringify(value);
    let group = groups.get(key);
    if (!group) {
      group = { value, tasks: 0, byStep: new Map() };
      groups.set(key, group);
    }
    group.tasks++;
    const { steps, values } = task;
    for (let i = 0; i < steps.length; i++) {
      const step = steps[i];
      const y = values[i];
      if (!Number.isFinite(y)) continue;
      let cell = group.byStep.get(step);
      if (!cell) {
        cell = { n: 0, mean: 0, m2: 0 };
        group.byStep.set(step, cell);
        allSteps.add(step);
      }
      cell.n++;
      const delta = y - cell.mean;
      cell.mean += delta / cell.n;
      cell.m2 += delta * (y - cell.mean);
    }
  }
  const steps = [...allSteps].sort((a, b) => a - b);
  const lines = [...groups.values()]
    .sort((a, b) => compareValues(a.value, b.value))
    .map((group) => {
      const n = new Array(steps.length).fill(null);
      const mean = new Array(steps.length).fill(null);
      const std = new Array(steps.length).fill(null);
      steps.forEach((step, index) => {
        const cell = group.byStep.get(step);
        if (!cell) return;
        n[index] = cell.n;
        mean[index] = cell.mean;
        std[index] = cell.n > 1 ? Math.sqrt(cell.m2 / (cell.n - 1)) : 0;
      });
      return { value: group.value, tasks: group.tasks, n, mean, std };
    });
  return { steps, lines };
}

/**
 * A task's series split by attempt, for the task page: per attempt present, its values at the
 * steps (null elsewhere), and where each later attempt took over (its first step).
 */
export function splitByAttempt(series) {
  const { steps, values, attempts } = series;
  const numbers = [...new Set(attempts)].sort((a, b) => a - b);
  const lines = numbers.map((attempt) => ({
    attempt,
    values: steps.map((_, index) => (attempts[index] === attempt ? values[index] : null)),
  }));
  const takeovers = [];
  for (const attempt of numbers.slice(1)) {
    const index = attempts.indexOf(attempt);
    takeovers.push({ attempt, step: steps[index] });
  }
  return { steps: [...steps], lines, takeovers };
}
