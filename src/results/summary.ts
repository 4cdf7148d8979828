/**
 * The summary table (`labsweep results`, the dashboard's summary): one row per configuration —
 * a phase and the values of every parameter but the seed, or of the `--by` parameters — with
 * how many of its tasks were planned and how many finished, and per metric n, mean, sample
 * standard deviation and a 95% Student-t confidence interval over the finished ones.
 * The statistics are here; how a summary prints is summaryFormat.ts.
 */
import type { Db } from "../ledger/db.js";
import { activePhases, type PlacedTask, placedTasks } from "../ledger/reads/summarySources.js";
import { compareValues } from "../ledger/reads/values.js";
import { canonicalText } from "../sweep/canonical.js";
import { didYouMean } from "../sweep/closest.js";
import type { ParamValue } from "../sweep/types.js";
import { studentTQuantile } from "./studentT.js";

/** The parameter averaged over: the original system's configs list it in `combinations`. */
export const SEED_PARAM = "seed";
/** The confidence level of the intervals. */
export const CONFIDENCE = 0.95;

/** Which way a metric improves. */
export type Goal = "min" | "max";

/** A metric to show, with the way it improves when the user said (`--metric loss:min`). */
export interface MetricChoice {
  name: string;
  goal?: Goal;
}

export interface SummaryOptions {
  /** Only this phase's tasks. (Default: every phase, with a phase column when there are several) */
  phase?: string;
  /** Group by these parameters only. (Default: every parameter but `seed`) */
  by?: string[];
  /** These metrics, in this order. (Default: every metric with a numeric value, by name) */
  metrics?: MetricChoice[];
}

/** One metric over a configuration's finished tasks; null where there is nothing to say. */
export interface MetricStats {
  /** Finished tasks whose result has this metric as a finite number. */
  n: number;
  mean: number | null;
  /** Sample standard deviation (n − 1); null for n < 2. */
  std: number | null;
  /** mean ∓ t(0.975, n − 1)·std/√n; null for n < 2. */
  ci_low: number | null;
  ci_high: number | null;
  /** The best mean of its column (lowest for a `min` metric, highest for `max`; ties all best). */
  best: boolean;
}

export interface SummaryRow {
  phase: string;
  /** The configuration's values of the columns in `Summary.by` (absent where a task has none). */
  params: Record<string, ParamValue>;
  /** The configuration's tasks in the grid. */
  planned: number;
  /** Those that succeeded. */
  finished: number;
  /** Fewer finished than planned (some seed failed, was cancelled or has not run yet). */
  incomplete: boolean;
  metrics: Record<string, MetricStats>;
}

/** The summary as `--format json` prints it and the dashboard reads it. */
export interface Summary {
  seed_param: string;
  confidence: number;
  /** The phases the rows come from, in declaration order. */
  phases: string[];
  /** Whether the rows span several phases, so a phase column is shown. */
  phase_column: boolean;
  /** The parameter columns: the `--by` parameters, else every parameter but the seed that varies. */
  by: string[];
  /** Parameters every row shares (not shown as columns), with their one value. */
  constants: Record<string, ParamValue>;
  metrics: Array<{ name: string; goal: Goal }>;
  rows: SummaryRow[];
}

/** A `--by`, `--metric` or `--phase` that names nothing in the sweep: bad input, not a failure. */
export class SummaryOptionError extends Error {
  override readonly name = "SummaryOptionError";
}

/** Metric names that read as "lower is better": a loss, an error rate, a perplexity, a time. */
const LOWER_IS_BETTER =
  /loss|err|perplexity|time|(^|[^a-z])(mse|mae|rmse|nll|ppl|wer|cer|latency)([^a-z]|$)/i;

/** How a metric improves, from its name: lower for loss/error/err/perplexity/time and the like. */
export function goalOf(name: string): Goal {
  return LOWER_IS_BETTER.test(name) ? "min" : "max";
}

/**
 * `--metric` text: names separated by commas, each optionally `:min` or `:max` (`loss:min,acc`);
 * repeated flags add up. A colon not followed by min or max is part of the name.
 */
export function parseMetricChoices(texts: readonly string[]): MetricChoice[] {
  const choices: MetricChoice[] = [];
  for (const part of texts.flatMap((text) => text.split(","))) {
    const trimmed = part.trim();
    if (trimmed === "") continue;
    const goal = /:(min|max)$/i.exec(trimmed);
    if (goal) choices.push({ name: trimmed.slice(0, goal.index), goal: goal[1]?.toLowerCase() as Goal });
    else choices.push({ name: trimmed });
  }
  return choices;
}

/** `--by` text: parameter names separated by commas; repeated flags add up; each once. */
export function parseByList(texts: readonly string[]): string[] {
  return [
    ...new Set(
      texts
        .flatMap((text) => text.split(","))
        .map((name) => name.trim())
        .filter(Boolean),
    ),
  ];
}

/** Reads the sweep's tasks from the ledger and summarizes them. */
export async function loadSummary(db: Db, options: SummaryOptions = {}): Promise<Summary> {
  const phases = await activePhases(db);
  if (options.phase !== undefined && !phases.includes(options.phase))
    throw new SummaryOptionError(
      `unknown phase "${options.phase}" (phases: ${phases.join(", ") || "none"})${didYouMean(options.phase, phases)}`,
    );
  const accumulator = new SummaryAccumulator(options.by);
  for await (const task of placedTasks(db, options.phase)) accumulator.add(task);
  return accumulator.summary(phases, options);
}

/** Running mean and sum of squared deviations (Welford): one pass, no values kept. */
interface Running {
  n: number;
  mean: number;
  m2: number;
}

interface Group {
  phase: string;
  /** The first task's values (as written in the config) of the grouping parameters. */
  values: Record<string, ParamValue>;
  planned: number;
  finished: number;
  metrics: Map<string, Running>;
}

/** Groups tasks into configurations as they stream by. */
export class SummaryAccumulator {
  private readonly groups = new Map<string, Group>();
  /** Every parameter name seen, in first-seen order. */
  private readonly params = new Set<string>();
  private readonly metrics = new Set<string>();

  constructor(private readonly by?: readonly string[]) {}

  add(task: PlacedTask): void {
    const params = JSON.parse(task.params_json) as Record<string, ParamValue>;
    for (const name of Object.keys(params)) this.params.add(name);
    const names = this.by ?? Object.keys(params).filter((name) => name !== SEED_PARAM);
    const values: Record<string, ParamValue> = {};
    for (const name of names) if (name in params) values[name] = params[name] as ParamValue;
    // Values equal under the signature's rule (4, 4.0 and "4") are one configuration.
    const key = JSON.stringify([
      task.phase,
      Object.keys(values)
        .sort()
        .map((name) => [name, canonicalText(values[name])]),
    ]);
    let group = this.groups.get(key);
    if (!group) {
      group = { phase: task.phase, values, planned: 0, finished: 0, metrics: new Map() };
      this.groups.set(key, group);
    }
    group.planned++;
    if (task.state !== "succeeded") return;
    group.finished++;
    const result = task.result_json ? (JSON.parse(task.result_json) as Record<string, unknown>) : {};
    for (const [name, value] of Object.entries(result)) {
      if (typeof value !== "number" || !Number.isFinite(value)) continue;
      this.metrics.add(name);
      const running = group.metrics.get(name) ?? { n: 0, mean: 0, m2: 0 };
      running.n++;
      const delta = value - running.mean;
      running.mean += delta / running.n;
      running.m2 += delta * (value - running.mean);
      group.metrics.set(name, running);
    }
  }

  /** The summary of what was added; throws SummaryOptionError for a --by or --metric that names nothing. */
  summary(phases: readonly string[], options: SummaryOptions = {}): Summary {
    for (const name of this.by ?? [])
      if (!this.params.has(name))
        throw new SummaryOptionError(
          `unknown parameter "${name}" in --by (parameters: ${[...this.params].join(", ") || "none"})${didYouMean(name, this.params)}`,
        );
    const metrics = this.chosenMetrics(options.metrics);
    const groups = [...this.groups.values()];
    const { by, constants } = this.columns(groups);
    const position = new Map(phases.map((phase, index) => [phase, index]));
    groups.sort(
      (a, b) =>
        (position.get(a.phase) ?? 0) - (position.get(b.phase) ?? 0) ||
        by.reduce((order, name) => order || compareValues(a.values[name], b.values[name]), 0),
    );
    const rows = groups.map((group) => rowOf(group, by, metrics));
    markBest(rows, metrics);
    const shownPhases = phases.filter((phase) => groups.some((group) => group.phase === phase));
    return {
      seed_param: SEED_PARAM,
      confidence: CONFIDENCE,
      phases: shownPhases,
      phase_column: shownPhases.length > 1,
      by,
      constants,
      metrics,
      rows,
    };
  }

  private chosenMetrics(choices: MetricChoice[] | undefined): Array<{ name: string; goal: Goal }> {
    if (!choices || choices.length === 0)
      return [...this.metrics].sort().map((name) => ({ name, goal: goalOf(name) }));
    const seen = new Set<string>();
    const chosen: Array<{ name: string; goal: Goal }> = [];
    for (const choice of choices) {
      if (!this.metrics.has(choice.name))
        throw new SummaryOptionError(
          `unknown metric "${choice.name}" in --metric: no finished task reported it as a number (metrics: ${[...this.metrics].sort().join(", ") || "none yet"})${didYouMean(choice.name, this.metrics)}`,
        );
      if (seen.has(choice.name)) continue;
      seen.add(choice.name);
      chosen.push({ name: choice.name, goal: choice.goal ?? goalOf(choice.name) });
    }
    return chosen;
  }

  /**
   * The parameter columns: the --by ones as given; else the parameters whose value differs
   * between configurations (a parameter every row shares is a constant, said once, not a column).
   */
  private columns(groups: readonly Group[]): { by: string[]; constants: Record<string, ParamValue> } {
    if (this.by) return { by: [...this.by], constants: {} };
    const by: string[] = [];
    const constants: Record<string, ParamValue> = {};
    for (const name of this.params) {
      if (name === SEED_PARAM) continue;
      const texts = new Set(
        groups.map((group) => (name in group.values ? canonicalText(group.values[name]) : "\u0000absent")),
      );
      if (texts.size > 1) by.push(name);
      else if (groups[0] && name in groups[0].values) constants[name] = groups[0].values[name] as ParamValue;
    }
    return { by, constants };
  }
}

function rowOf(group: Group, by: readonly string[], metrics: ReadonlyArray<{ name: string }>): SummaryRow {
  const params: Record<string, ParamValue> = {};
  for (const name of by) if (name in group.values) params[name] = group.values[name] as ParamValue;
  const stats: Record<string, MetricStats> = {};
  for (const { name } of metrics) stats[name] = statsOf(group.metrics.get(name));
  return {
    phase: group.phase,
    params,
    planned: group.planned,
    finished: group.finished,
    incomplete: group.finished < group.planned,
    metrics: stats,
  };
}

/** n, mean, sample std and the t interval of one metric; std and interval only from n = 2. */
export function statsOf(running: Running | undefined): MetricStats {
  if (!running || running.n === 0)
    return { n: 0, mean: null, std: null, ci_low: null, ci_high: null, best: false };
  const { n, mean } = running;
  if (n < 2) return { n, mean, std: null, ci_low: null, ci_high: null, best: false };
  const std = Math.sqrt(running.m2 / (n - 1));
  const half = (studentTQuantile(0.5 + CONFIDENCE / 2, n - 1) * std) / Math.sqrt(n);
  return { n, mean, std, ci_low: mean - half, ci_high: mean + half, best: false };
}

/** Marks each metric's best mean over all rows (every row that ties it). */
function markBest(rows: SummaryRow[], metrics: ReadonlyArray<{ name: string; goal: Goal }>): void {
  for (const { name, goal } of metrics) {
    const means = rows.map((row) => row.metrics[name]?.mean ?? null).filter((mean) => mean !== null);
    if (means.length === 0) continue;
    // A loop, not Math.min(...means): a spread of a few hundred thousand rows overflows the stack.
    const best = means.reduce((a, b) => (goal === "min" ? Math.min(a, b) : Math.max(a, b)));
    for (const row of rows) {
      const stats = row.metrics[name];
      if (stats && stats.mean === best) stats.best = true;
    }
  }
}

/** A column to sort the rows by: `phase`, `n`, `param:NAME` or `metric:NAME` (by mean). */
export type SummarySort = string;

/**
 * The rows ordered by one column (stable; rows without a value last in either direction), as the
 * dashboard shows them and exports them. Throws SummaryOptionError for a column there is not.
 */
export function sortedRows(summary: Summary, column: SummarySort, dir: "asc" | "desc"): SummaryRow[] {
  const value = sortValue(summary, column);
  const sign = dir === "desc" ? -1 : 1;
  return summary.rows
    .map((row, index) => ({ row, index, value: value(row) }))
    .sort((a, b) => {
      const missing = Number(a.value === undefined) - Number(b.value === undefined);
      return missing || sign * compareValues(a.value, b.value) || a.index - b.index;
    })
    .map((entry) => entry.row);
}

function sortValue(summary: Summary, column: SummarySort): (row: SummaryRow) => unknown {
  const some = (value: unknown) => (value === null ? undefined : value);
  if (column === "phase") return (row) => row.phase;
  if (column === "n") return (row) => row.finished;
  if (column.startsWith("param:") && summary.by.includes(column.slice(6)))
    return (row) => row.params[column.slice(6)];
  if (column.startsWith("metric:") && summary.metrics.some((metric) => metric.name === column.slice(7)))
    return (row) => some(row.metrics[column.slice(7)]?.mean ?? null);
  throw new SummaryOptionError(
    `cannot sort by "${column}": sort by phase, n, param:NAME (${summary.by.join(", ") || "none"}) or metric:NAME (${summary.metrics.map((metric) => metric.name).join(", ") || "none"})`,
  );
}
