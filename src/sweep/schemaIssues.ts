import type * as z from "zod/mini";
import { closest, didYouMean } from "./closest.js";
import { describeValue, endSentence } from "./errorWording.js";
import { launcherProblem } from "./launcherSetting.js";
import { notifyProblem } from "./notifySetting.js";
import { FILE_KEYS, ON_OOM_KEYS, RESOURCE_KEYS } from "./schema.js";
import type { YamlSource } from "./yamlSource.js";

// zod's issues turned into ConfigErrors that teach: the place, the allowed keys, a "did you mean".

/** Runs a zod schema and turns its first issue into a ConfigError that teaches. */
export function validate<T>(
  source: YamlSource,
  base: Array<string | number>,
  schema: z.ZodMiniType<T>,
  value: unknown,
  allowed: Record<string, string>,
  phaseName?: string,
): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0] as z.core.$ZodIssue;
  const path = [...base, ...(issue.path as Array<string | number>)];
  if (issue.path[0] === "launcher") {
    // A union reports one issue for the whole value: find what is wrong in the value itself.
    const problem =
      issue.code === "custom" && issue.path.length > 1
        ? {
            path: issue.path.slice(1) as Array<string | number>,
            message: issue.message,
            at: "value" as const,
          }
        : launcherProblem(valueAt(value, ["launcher"]));
    throw source.error([...base, "launcher", ...problem.path], problem.message, problem.at);
  }
  if (issue.path[0] === "notify") {
    const problem = notifyProblem(valueAt(value, ["notify"]));
    throw source.error([...base, "notify", ...problem.path], problem.message, problem.at);
  }
  if (issue.code === "unrecognized_keys") {
    const key = issue.keys[0] as string;
    const keyPath = [...path, key];
    const scope = keyPath.includes("resources")
      ? RESOURCE_KEYS
      : keyPath.includes("on_oom")
        ? ON_OOM_KEYS
        : allowed;
    const listing = Object.entries(scope)
      .map(([name, fallback]) => `${name} (default: ${fallback})`)
      .join(", ");
    let hint = didYouMean(key, Object.keys(scope));
    const atPhaseTop = phaseName !== undefined && base.length === 1 && path.length === 1;
    if (!hint && atPhaseTop && key === "seeds") {
      hint = " — `seeds` is a file-level setting; in a phase, list `- seed: [...]` under combinations";
    }
    if (!hint && atPhaseTop) {
      const setting = closest(phaseName, Object.keys(FILE_KEYS));
      hint = setting
        ? ` (is the phase name "${phaseName}" a misspelt setting? did you mean "${setting}"?)`
        : " (parameters go under `defaults:` or `combinations:`)";
    }
    throw source.error(keyPath, `unknown key "${key}"${endSentence(hint)}Allowed keys: ${listing}`, "key");
  }
  const relative = issue.path as Array<string | number>;
  throw source.error(path, describeIssue(issue, path, valueAt(value, relative)));
}

const GATE_FORM = 'expected "all_succeeded" or {min_success: 0.0–1.0}';

function describeIssue(issue: z.core.$ZodIssue, path: Array<string | number>, value: unknown): string {
  const key = path[path.length - 1];
  const parentKey = path[path.length - 2];
  if (key === "gate") return describeGate(value);
  if (parentKey === "gate" && key === "min_success") {
    const fraction = typeof value === "number" && value > 1 && value <= 100 ? ` (${value / 100}?)` : "";
    return `min_success is a fraction of tasks in (0, 1], e.g. 0.9 for 90%; got ${describeValue(value)}${fraction}`;
  }
  if ((issue.code === "invalid_union" || issue.code === "custom") && (key === "timeout" || key === "backoff"))
    return `${issue.code === "custom" ? issue.message : "expected a duration such as 90s, 30m, 2h or 1h30m"}; got ${describeValue(value)}`;
  if (issue.code === "invalid_union" && parentKey === "env")
    return `expected a string, number or boolean (set as the variable's text); got ${describeValue(value)}`;
  if (issue.code === "invalid_union" && parentKey === "seeds")
    return `expected a number or a string; got ${describeValue(value)}`;
  if (issue.code === "invalid_type") {
    const expected = EXPECTED[issue.expected] ?? issue.expected;
    const got = `got ${describeValue(value)}`;
    if (key === "after" && typeof value === "string")
      return `expected a list of phase names; ${got} — write after: [${value}]`;
    if (key === "seeds" && value !== null && !Array.isArray(value))
      return `expected a list of seeds; ${got} — write seeds: [${String(value)}]`;
    if (parentKey === "seeds") return `expected a number or a string; ${got}`;
    if (key === "combinations") return `expected a list of single-key maps \`- param: [values]\`; ${got}`;
    if (typeof key === "number" && parentKey === "combinations")
      return `expected a single-key map \`param: [values]\`; ${got}`;
    if (path[path.length - 3] === "combinations" && typeof key === "string")
      return `expected a list of values; ${got}${value === null ? "" : ` — write ${key}: [${JSON.stringify(value)}]`}`;
    return `expected ${expected}; ${got}`;
  }
  if (issue.code === "custom" && typeof key === "number" && parentKey === "combinations") {
    const keys = value && typeof value === "object" ? Object.keys(value) : [];
    if (keys.length === 0)
      return "is an empty map: each combinations entry is a single-key map `param: [values]`";
    return `has ${keys.length} keys (${keys.join(", ")}); each combinations entry is a single-key map \`param: [values]\`: write \`- ${keys[0]}: [...]\` and \`- ${keys[1]}: [...]\` as separate entries`;
  }
  if (issue.code === "invalid_union") return `has an invalid value: ${describeValue(value)}`;
  if (issue.code === "too_small" && issue.origin === "number")
    return `must be ${issue.inclusive ? "≥" : ">"} ${issue.minimum}; got ${describeValue(value)}`;
  if (issue.code === "too_big" && issue.origin === "number")
    return `must be ${issue.inclusive ? "≤" : "<"} ${issue.maximum}; got ${describeValue(value)}`;
  return issue.message;
}

function describeGate(value: unknown): string {
  if (typeof value === "string") return `${GATE_FORM}; got "${value}"${didYouMean(value, ["all_succeeded"])}`;
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    const extra = Object.keys(value).find((key) => key !== "min_success");
    if (extra) return `${GATE_FORM}; got key "${extra}"${didYouMean(extra, ["min_success"])}`;
  }
  return `${GATE_FORM}; got ${describeValue(value)}`;
}

const EXPECTED: Record<string, string> = {
  array: "a list",
  record: "a mapping (key: value)",
  object: "a mapping (key: value)",
  map: "a mapping (key: value)",
  string: "a string",
  number: "a number",
  int: "a whole number",
  boolean: "true or false",
};

function valueAt(value: unknown, path: Array<string | number>): unknown {
  let node = value;
  for (const part of path) {
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<string | number, unknown>)[part];
  }
  return node;
}
