import { dirname, resolve } from "node:path";
import type { z } from "zod";
import { closest, didYouMean } from "./closest.js";
import { checkShellSafety, rejectNulValues } from "./commandSafety.js";
import { parseDuration } from "./duration.js";
import { pythonEntryProblem } from "./launcher.js";
import {
  FILE_KEYS,
  type FileSettingsInput,
  fileSettingsSchema,
  LAUNCHER_KEYS,
  LAUNCHER_NAMES,
  type LauncherInput,
  MIXED_PRECISIONS,
  PHASE_KEYS,
  type PhaseInput,
  phaseSchema,
  RESOURCE_KEYS,
} from "./schema.js";
import { formatSpecUse, placeholderNames } from "./template.js";
import {
  DEFAULT_MAX_LOST,
  type Gate,
  type LauncherSpec,
  type Params,
  type ParamValue,
  type PhaseSpec,
  type RunPolicy,
  type SweepFile,
} from "./types.js";
import { parseYamlSource, type YamlSource } from "./yamlSource.js";

export interface LoadOptions {
  /** Command template for configs that declare none (the original system's configs). */
  defaultCommand?: string | undefined;
}

/** A whole sweep: every phase of every config file, validated together. */
export interface Sweep {
  files: string[];
  phases: PhaseSpec[];
}

/** Validates several config files as one sweep: phase names unique, `after` refers to real phases, no cycles. */
export function loadSweep(
  inputs: ReadonlyArray<{ file: string; text: string }>,
  options: LoadOptions = {},
): Sweep {
  const parsed = inputs.map((input) => parseWithSource(input.file, input.text, options));
  const sourceOf = new Map<PhaseSpec, YamlSource>();
  for (const { sweepFile, source } of parsed)
    for (const phase of sweepFile.phases) sourceOf.set(phase, source);
  const phases = parsed.flatMap(({ sweepFile }) => sweepFile.phases);
  const byName = new Map<string, PhaseSpec>();
  for (const phase of phases) {
    const earlier = byName.get(phase.name);
    if (earlier) {
      throw (sourceOf.get(phase) as YamlSource).error(
        [phase.name],
        `phase "${phase.name}" is already defined at ${earlier.file}:${earlier.line}; phase names must be unique across the sweep`,
        "key",
      );
    }
    byName.set(phase.name, phase);
  }
  for (const phase of phases) {
    for (const [index, dependency] of phase.after.entries()) {
      if (!byName.has(dependency)) {
        throw (sourceOf.get(phase) as YamlSource).error(
          [phase.name, "after", index],
          `unknown phase "${dependency}"${didYouMean(dependency, byName.keys())}. Phases: ${[...byName.keys()].join(", ")}`,
        );
      }
    }
  }
  rejectCycles(phases, byName, sourceOf);
  return { files: parsed.map(({ sweepFile }) => sweepFile.file), phases };
}

function rejectCycles(
  phases: PhaseSpec[],
  byName: Map<string, PhaseSpec>,
  sourceOf: Map<PhaseSpec, YamlSource>,
): void {
  const state = new Map<string, "visiting" | "done">();
  const visit = (phase: PhaseSpec, trail: string[]): void => {
    state.set(phase.name, "visiting");
    for (const [index, name] of phase.after.entries()) {
      const next = byName.get(name) as PhaseSpec;
      if (state.get(name) === "visiting") {
        const cycle = [...trail.slice(trail.indexOf(name)), phase.name, name].join(" → ");
        throw (sourceOf.get(phase) as YamlSource).error(
          [phase.name, "after", index],
          `phases wait on each other in a cycle: ${cycle}; remove one of these \`after\` entries`,
        );
      }
      if (state.get(name) !== "done") visit(next, [...trail, phase.name]);
    }
    state.set(phase.name, "done");
  };
  for (const phase of phases) if (state.get(phase.name) !== "done") visit(phase, []);
}

/** Parses and validates one config file in the original system's format plus labsweep's keys. */
export function parseSweepFile(file: string, text: string, options: LoadOptions = {}): SweepFile {
  return parseWithSource(file, text, options).sweepFile;
}

const SETTINGS_LIST = Object.keys(FILE_KEYS).join(", ");

function parseWithSource(
  file: string,
  text: string,
  options: LoadOptions,
): { sweepFile: SweepFile; source: YamlSource } {
  const source = parseYamlSource(file, text);
  const data = source.data;
  if (data === null || data === undefined) {
    throw source.error(
      [],
      `the file is empty: a sweep config is a mapping of settings (${SETTINGS_LIST}) and phases`,
    );
  }
  if (typeof data !== "object" || Array.isArray(data)) {
    throw source.error(
      [],
      `the top level is ${describeValue(data)}, but a sweep config is a mapping of settings (${SETTINGS_LIST}) and phases`,
    );
  }
  const record = data as Record<string, unknown>;
  // Own keys only, copied as data: a `__proto__` key must stay a key (then a phase the schema
  // names), never become the prototype of the settings object.
  const settingsInput: Record<string, unknown> = Object.create(null);
  const phaseNames: string[] = [];
  for (const key of Object.keys(record)) {
    if (Object.hasOwn(FILE_KEYS, key)) settingsInput[key] = record[key];
    else phaseNames.push(key);
  }
  const settings = validate(source, [], fileSettingsSchema, settingsInput, FILE_KEYS);
  if (phaseNames.length === 0) {
    throw source.error(
      [],
      "no phases: add a top-level key per phase, each with `combinations` and `output_dir`",
    );
  }
  const phases = phaseNames.map((name) => buildPhase(source, name, record[name], settings, options));
  return { sweepFile: { file, phases }, source };
}

function buildPhase(
  source: YamlSource,
  name: string,
  raw: unknown,
  settings: FileSettingsInput,
  options: LoadOptions,
): PhaseSpec {
  const isMapping = raw !== null && typeof raw === "object" && !Array.isArray(raw);
  const setting = closest(name, Object.keys(FILE_KEYS));
  // A scalar or list, or an empty mapping, under a name close to a setting is a misspelt setting.
  if (setting && (!isMapping || Object.keys(raw as object).length === 0)) {
    throw source.error(
      [name],
      `unknown setting "${name}" — did you mean "${setting}"? Settings: ${SETTINGS_LIST}; every other top-level key is a phase`,
      "key",
    );
  }
  if (!isMapping) {
    throw source.error(
      [name],
      `phase "${name}" must be a mapping with keys such as combinations, defaults and output_dir, but is ${describeValue(raw)} (settings are: ${SETTINGS_LIST})`,
      "key",
    );
  }
  const input = validate(source, [name], phaseSchema, raw, PHASE_KEYS, name);
  const defaults: Params = { ...(settings.defaults as Params), ...(input.defaults as Params) };
  const axes = (input.combinations ?? []).map((entry) => {
    const [param, values] = Object.entries(entry)[0] as [string, unknown[]];
    return { name: param, values: values as ParamValue[] };
  });
  rejectRepeatedAxes(source, name, axes);
  const listsSeed = axes.some((axisEntry) => axisEntry.name === "seed");
  const seedsAxis = settings.seeds !== undefined && !listsSeed;
  if (seedsAxis) axes.unshift({ name: "seed", values: settings.seeds as ParamValue[] });
  rejectReservedNames(source, name, input, settings);
  rejectNulValues(source, name, input, settings);

  const commandTemplate = input.command ?? settings.command ?? options.defaultCommand;
  if (!commandTemplate) {
    throw source.error(
      [name],
      "no command: set `command:` at the top of the file or in this phase (e.g. `command: python train.py --lr {lr}`), or pass --command",
      "key",
    );
  }
  const outputDirTemplate = input.output_dir ?? settings.output_dir ?? "results/{phase}";
  const known = new Set([...Object.keys(defaults), ...axes.map((axisEntry) => axisEntry.name)]);
  const commandPath = input.command ? [name, "command"] : settings.command ? ["command"] : [name];
  checkPlaceholders(source, commandPath, commandTemplate, known, `command of phase "${name}"`);
  checkPlaceholders(
    source,
    input.output_dir ? [name, "output_dir"] : settings.output_dir ? ["output_dir"] : [name],
    outputDirTemplate,
    new Set([...known, "phase"]),
    `output_dir of phase "${name}"`,
  );
  checkShellSafety(source, name, commandPath, commandTemplate);
  checkLauncherCommand(source, name, input, settings, commandPath, commandTemplate);
  const writtenAs = writtenSpellings(source, name, input, settings, axes, seedsAxis);
  return {
    name,
    file: source.file,
    line: source.placeOf([name], "key").line,
    baseDir: dirname(resolve(source.file)),
    defaults,
    axes,
    outputDirTemplate,
    commandTemplate,
    ...(writtenAs ? { writtenAs } : {}),
    after: input.after ?? [],
    gate: toGate(input.gate),
    policy: toPolicy(input, settings),
  };
}

/**
 * Records how numbers and booleans are spelt where that differs from their plain text (0.0,
 * 1e-3, True), so templates render them as written. Undefined when nothing differs.
 */
function writtenSpellings(
  source: YamlSource,
  phase: string,
  input: PhaseInput,
  settings: FileSettingsInput,
  axes: Array<{ name: string; values: ParamValue[] }>,
  seedsAxis: boolean,
): Record<string, Record<string, string>> | undefined {
  const spellings: Record<string, Record<string, string>> = {};
  let any = false;
  const note = (param: string, value: unknown, path: Array<string | number>): void => {
    if (typeof value !== "number" && typeof value !== "boolean") return;
    const written = source.writtenText(path);
    if (written === undefined || written === String(value)) return;
    spellings[param] ??= {};
    (spellings[param] as Record<string, string>)[JSON.stringify(value)] ??= written;
    any = true;
  };
  for (const [key, value] of Object.entries(settings.defaults ?? {})) note(key, value, ["defaults", key]);
  for (const [key, value] of Object.entries(input.defaults ?? {})) {
    delete spellings[key];
    note(key, value, [phase, "defaults", key]);
  }
  for (const [index, axisEntry] of axes.entries()) {
    delete spellings[axisEntry.name];
    const fromSeeds = seedsAxis && index === 0;
    const combination = fromSeeds ? index : index - (seedsAxis ? 1 : 0);
    for (const [position, value] of axisEntry.values.entries()) {
      const path = fromSeeds
        ? ["seeds", position]
        : [phase, "combinations", combination, axisEntry.name, position];
      note(axisEntry.name, value, path);
    }
  }
  if (!any) return undefined;
  for (const [key, map] of Object.entries(spellings))
    if (Object.keys(map).length === 0) delete spellings[key];
  return Object.keys(spellings).length > 0 ? spellings : undefined;
}

/** `phase` names the phase in output_dir and in the results CSV, so it cannot be a parameter. */
function rejectReservedNames(
  source: YamlSource,
  phase: string,
  input: PhaseInput,
  settings: FileSettingsInput,
): void {
  const reserved = "phase";
  const message = `"${reserved}" is reserved: it is the phase name (in output_dir and in the results CSV); rename this parameter`;
  if (settings.defaults && reserved in settings.defaults)
    throw source.error(["defaults", reserved], message, "key");
  if (input.defaults && reserved in input.defaults)
    throw source.error([phase, "defaults", reserved], message, "key");
  const index = (input.combinations ?? []).findIndex((entry) => reserved in entry);
  if (index >= 0) throw source.error([phase, "combinations", index, reserved], message, "key");
}

function rejectRepeatedAxes(source: YamlSource, phase: string, axes: Array<{ name: string }>): void {
  const seen = new Set<string>();
  for (const [index, axisEntry] of axes.entries()) {
    if (seen.has(axisEntry.name)) {
      throw source.error(
        [phase, "combinations", index],
        `parameter "${axisEntry.name}" is listed twice in combinations; merge its values into one list`,
      );
    }
    seen.add(axisEntry.name);
  }
}

function checkPlaceholders(
  source: YamlSource,
  path: Array<string | number>,
  template: string,
  known: Set<string>,
  what: string,
): void {
  // A template that comes from no key in this file (--command) is placed at the phase's name.
  const at = path.length === 1 && !(path[0] === "command" || path[0] === "output_dir") ? "key" : "value";
  const spec = formatSpecUse(template, known);
  if (spec) {
    throw source.error(
      path,
      `${spec.text}: format specs and conversions are not supported; write {${spec.name}} (the value as written in the config)`,
      at,
    );
  }
  for (const placeholder of placeholderNames(template)) {
    if (known.has(placeholder)) continue;
    const names = [...known].sort().join(", ") || "(none)";
    const why =
      what.startsWith("command") && placeholder === "phase"
        ? " ({phase} works in output_dir only: a task shared by several phases runs once, with one command)"
        : didYouMean(placeholder, known);
    throw source.error(
      path,
      `undefined placeholder {${placeholder}} in ${what}${endSentence(why)}Defined: ${names}; write {{ and }} for literal braces`,
      at,
    );
  }
}

/** Ends a sentence after an optional hint: `"x"? ` after a question, `. ` otherwise. */
function endSentence(hint: string): string {
  return hint.endsWith("?") ? `${hint} ` : `${hint}. `;
}

function toGate(input: PhaseInput["gate"]): Gate {
  if (input === undefined || input === "all_succeeded") return { kind: "all_succeeded" };
  return { kind: "min_success", ratio: input.min_success };
}

/** With a launcher, the command must start with a Python script or module (see launcher.ts). */
function checkLauncherCommand(
  source: YamlSource,
  phase: string,
  input: PhaseInput,
  settings: FileSettingsInput,
  commandPath: Array<string | number>,
  commandTemplate: string,
): void {
  const launcher = toLauncher(input.launcher ?? settings.launcher);
  if (launcher === null) return;
  const problem = pythonEntryProblem(commandTemplate);
  if (problem === null) return;
  const from = input.launcher === undefined ? " (the file-level launcher)" : "";
  const shown = commandTemplate.length > 60 ? `${commandTemplate.slice(0, 60)}…` : commandTemplate;
  throw source.error(
    commandPath,
    `with launcher ${launcher.name}${from} the command must start with a Python script or module, as in \`train.py --lr {lr}\`, \`python train.py --lr {lr}\` or \`-m pkg.train --lr {lr}\`: ${problem}; got ${JSON.stringify(shown)}`,
    commandPath.length === 1 && commandPath[0] === phase ? "key" : "value",
  );
}

/** The launcher a validated `launcher:` value asks for; null for none. */
function toLauncher(input: LauncherInput | undefined): LauncherSpec | null {
  if (input === undefined || input === "none") return null;
  if (input === "accelerate")
    return { name: "accelerate", mixedPrecision: null, mainProcessPort: "auto", extraArgs: [] };
  if (input === "torchrun") return { name: "torchrun", masterPort: "auto", extraArgs: [] };
  const extraArgs = (input.extra_args ?? []).map(String);
  if (input.name === "accelerate") {
    return {
      name: "accelerate",
      mixedPrecision: input.mixed_precision ?? null,
      mainProcessPort: input.main_process_port ?? "auto",
      extraArgs,
    };
  }
  return { name: "torchrun", masterPort: input.master_port ?? "auto", extraArgs };
}

function toPolicy(phase: PhaseInput, file: FileSettingsInput): RunPolicy {
  const timeout = phase.timeout ?? file.timeout;
  const backoff = phase.backoff ?? file.backoff;
  const resources = { ...file.resources, ...phase.resources };
  return {
    retries: phase.retries ?? file.retries ?? 3,
    maxLost: phase.max_lost ?? file.max_lost ?? DEFAULT_MAX_LOST,
    timeoutMs: timeout === undefined ? null : parseDuration(timeout),
    backoffMs: backoff === undefined ? 1000 : (parseDuration(backoff) as number),
    resources: {
      gpus: resources.gpus ?? null,
      gpuMemoryGb: resources.gpu_memory_gb ?? 0,
      cpus: resources.cpus ?? 1,
      tags: [...new Set(resources.tags ?? [])],
    },
    // The phase's launcher replaces the file's as a whole (`none` turns it off).
    launcher: toLauncher(phase.launcher ?? file.launcher),
  };
}

/** Runs a zod schema and turns its first issue into a ConfigError that teaches. */
function validate<T>(
  source: YamlSource,
  base: Array<string | number>,
  schema: z.ZodType<T>,
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
  if (issue.code === "unrecognized_keys") {
    const key = issue.keys[0] as string;
    const keyPath = [...path, key];
    const scope = keyPath.includes("resources") ? RESOURCE_KEYS : allowed;
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

const LAUNCHER_FORM =
  "expected none, accelerate or torchrun, or a mapping such as {name: accelerate, mixed_precision: bf16}";

/** What is wrong with a `launcher:` value zod rejected, and where inside it. */
function launcherProblem(value: unknown): {
  path: Array<string | number>;
  message: string;
  at: "key" | "value";
} {
  const names = LAUNCHER_NAMES as readonly string[];
  if (typeof value === "string")
    return { path: [], message: `${LAUNCHER_FORM}; got "${value}"${didYouMean(value, names)}`, at: "value" };
  if (value === null || typeof value !== "object" || Array.isArray(value))
    return { path: [], message: `${LAUNCHER_FORM}; got ${describeValue(value)}`, at: "value" };
  const record = value as Record<string, unknown>;
  const name = record.name;
  if (name === undefined)
    return {
      path: [],
      message: "the mapping form needs `name: accelerate` or `name: torchrun`",
      at: "value",
    };
  if (name !== "accelerate" && name !== "torchrun") {
    const why =
      name === "none"
        ? " (write `launcher: none` for no launcher)"
        : typeof name === "string"
          ? didYouMean(name, ["accelerate", "torchrun"])
          : "";
    return {
      path: ["name"],
      message: `expected accelerate or torchrun; got ${describeValue(name)}${why}`,
      at: "value",
    };
  }
  const allowed = LAUNCHER_KEYS[name];
  const other = name === "accelerate" ? "torchrun" : "accelerate";
  const unknown = Object.keys(record).find((key) => !(key in allowed));
  if (unknown !== undefined) {
    let hint = didYouMean(unknown, Object.keys(allowed));
    if (!hint && unknown in LAUNCHER_KEYS[other]) hint = ` — that is a ${other} key`;
    const listing = Object.entries(allowed)
      .map(([key, fallback]) => `${key} (default: ${fallback})`)
      .join(", ");
    return {
      path: [unknown],
      message: `unknown key "${unknown}" for ${name}${endSentence(hint)}Allowed keys: ${listing}`,
      at: "key",
    };
  }
  const precision = record.mixed_precision;
  if (precision !== undefined && !(MIXED_PRECISIONS as readonly unknown[]).includes(precision)) {
    const why = typeof precision === "string" ? didYouMean(precision, MIXED_PRECISIONS) : "";
    return {
      path: ["mixed_precision"],
      message: `expected one of ${MIXED_PRECISIONS.join(", ")}; got ${describeValue(precision)}${why}`,
      at: "value",
    };
  }
  for (const key of ["main_process_port", "master_port"]) {
    const port = record[key];
    if (port === undefined || port === "auto") continue;
    if (!(Number.isInteger(port) && (port as number) >= 1 && (port as number) <= 65535))
      return {
        path: [key],
        message: `expected auto or a port number 1–65535; got ${describeValue(port)}`,
        at: "value",
      };
  }
  const extra = record.extra_args;
  if (extra !== undefined) {
    if (!Array.isArray(extra))
      return {
        path: ["extra_args"],
        message: `expected a list of arguments, e.g. [--num_cpu_threads_per_process, 4]; got ${describeValue(extra)}`,
        at: "value",
      };
    const index = extra.findIndex((item) => typeof item !== "string" && typeof item !== "number");
    if (index >= 0)
      return {
        path: ["extra_args", index],
        message: `expected a string or a number; got ${describeValue(extra[index])}`,
        at: "value",
      };
  }
  return { path: [], message: `${LAUNCHER_FORM}; got an invalid mapping`, at: "value" };
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

/** A short, one-line description of a YAML value for error messages. */
function describeValue(value: unknown): string {
  if (value === null || value === undefined) return "nothing (null)";
  if (typeof value === "string") {
    const text = value.length > 40 ? `${value.slice(0, 40)}…` : value;
    return `the string ${JSON.stringify(text)}`;
  }
  if (typeof value === "number" || typeof value === "boolean") return `${typeof value} ${String(value)}`;
  if (Array.isArray(value)) return `a list of ${value.length}`;
  return "a mapping";
}

function valueAt(value: unknown, path: Array<string | number>): unknown {
  let node = value;
  for (const part of path) {
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<string | number, unknown>)[part];
  }
  return node;
}
