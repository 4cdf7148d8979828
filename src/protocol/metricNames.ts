/**
 * Metric names as they travel from a task to a CSV column: nested objects become dotted names,
 * `{"val": {"acc": 1}}` → `val.acc`, whether the task wrote its result file by hand or through
 * the Python client. One rule for results and live reports, so a curve and its final value share
 * a name.
 */

/** Deeper nesting than this is refused: a metric tree is a few levels, never a data structure. */
const MAX_DEPTH = 8;

export type FlatMetrics = Record<string, unknown>;

/**
 * `metrics` with nested plain objects flattened to dotted names; arrays, strings, numbers, null
 * stay values. Two paths that reach the same name (`{"a.b": 1, "a": {"b": 2}}`) are an error
 * naming it, never one silently overwriting the other; so is an empty name part.
 */
export function flattenMetrics(
  metrics: Record<string, unknown>,
): { metrics: FlatMetrics } | { error: string } {
  const flat: FlatMetrics = Object.create(null);
  const problem = flattenInto(flat, metrics, "", 0);
  if (problem) return { error: problem };
  // A plain object again, so callers can spread and serialise it as usual.
  return { metrics: { ...flat } };
}

function flattenInto(
  flat: FlatMetrics,
  value: Record<string, unknown>,
  prefix: string,
  depth: number,
): string | null {
  if (depth >= MAX_DEPTH) return `metric ${JSON.stringify(prefix)} nests deeper than ${MAX_DEPTH} levels`;
  for (const [key, inner] of Object.entries(value)) {
    if (key === "") return `metric ${JSON.stringify(prefix || "(top)")} has a key that is empty`;
    const name = prefix === "" ? key : `${prefix}.${key}`;
    if (isPlainObject(inner)) {
      const problem = flattenInto(flat, inner, name, depth + 1);
      if (problem) return problem;
      continue;
    }
    if (Object.hasOwn(flat, name))
      return `metric ${JSON.stringify(name)} is given twice (once nested, once dotted)`;
    flat[name] = inner;
  }
  return null;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
