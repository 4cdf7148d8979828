/**
 * Live metrics (points and series, see interfaces.ts): the bounds and the one reading of an
 * events-file line, shared by the agent's relay (which drops what breaks them before sending)
 * and the ledger (which checks again: an HTTP body is anyone's input).
 */
import type { MetricPoint } from "./interfaces.js";
import { flattenMetrics } from "./metricNames.js";

/**
 * Points a series keeps. Past it the series is thinned: every other point goes, the first and
 * the last stay, so a long run's curve keeps its shape in about half as many points.
 */
export const MAX_POINTS_PER_SERIES = 1000;
/** Distinct metric names a task may report; points of further names are dropped. */
export const MAX_SERIES_PER_TASK = 200;
/** Longest metric name, in characters; a longer one is dropped. */
export const MAX_METRIC_NAME_CHARS = 200;
/** Longest events-file line, in bytes; a longer one is dropped whole. */
export const MAX_EVENT_LINE_BYTES = 64 * 1024;

export type LineReading =
  | { kind: "point"; point: MetricPoint; droppedNames: number }
  /** A well-formed line that carries no point: another type, or a report whose metrics were all dropped. */
  | { kind: "skip" }
  | { kind: "invalid"; error: string };

/**
 * One line of LABSWEEP_EVENTS_FILE (without its "\n"): `{"type": "report", "step": 12,
 * "time": 1733540000.1, "metrics": {...}}`. Nested metrics are flattened; values that are not
 * finite numbers and names over MAX_METRIC_NAME_CHARS are left out; a missing or bad `time`
 * becomes `now` (epoch seconds). Lines of other types are for other readers: skipped.
 */
export function readEventLine(line: string, now: number): LineReading {
  const value = parseLenient(line);
  if (value === undefined) return { kind: "invalid", error: "not JSON" };
  if (!isObject(value)) return { kind: "invalid", error: "not a JSON object" };
  if (typeof value.type !== "string") return { kind: "invalid", error: 'no "type"' };
  if (value.type !== "report") return { kind: "skip" };
  const step = value.step;
  if (typeof step !== "number" || !Number.isSafeInteger(step) || step < 0)
    return { kind: "invalid", error: `step must be a whole number ≥ 0, got ${String(step).slice(0, 40)}` };
  if (!isObject(value.metrics)) return { kind: "invalid", error: '"metrics" must be an object' };
  const flat = flattenMetrics(value.metrics);
  if ("error" in flat) return { kind: "invalid", error: flat.error };
  const metrics: Record<string, number> = {};
  let droppedNames = 0;
  for (const [name, metric] of Object.entries(flat.metrics)) {
    if (validValue(metric) && validName(name)) metrics[name] = metric;
    else droppedNames++;
  }
  if (Object.keys(metrics).length === 0) return { kind: "skip" };
  const time = typeof value.time === "number" && Number.isFinite(value.time) ? value.time : now;
  return { kind: "point", point: { step, time, metrics }, droppedNames };
}

export function validName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_METRIC_NAME_CHARS;
}

export function validValue(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value);
}

export function validStep(step: unknown): step is number {
  return typeof step === "number" && Number.isSafeInteger(step) && step >= 0;
}

/**
 * JSON, or Python's json.dumps of a NaN or infinite float (bare NaN/Infinity, which JSON lacks):
 * those become null — dropped as values — so one diverged metric does not cost a whole point.
 */
function parseLenient(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    try {
      return JSON.parse(line.replace(/([:,[]\s*)-?(?:NaN|Infinity)(?=\s*[,}\]])/g, "$1null"));
    } catch {
      return undefined;
    }
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
