import { dirname, resolve } from "node:path";
import type { z } from "zod";
import { didYouMean } from "./closest.js";
import { ConfigError } from "./configError.js";
import { parseDuration } from "./duration.js";
import {
  FILE_KEYS,
  type FileSettingsInput,
  fileSettingsSchema,
  PHASE_KEYS,
  type PhaseInput,
  phaseSchema,
  RESOURCE_KEYS,
} from "./schema.js";
import { placeholderNames } from "./template.js";
import type { Gate, Params, ParamValue, PhaseSpec, RunPolicy, SweepFile } from "./types.js";
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
  const files = inputs.map((input) => parseSweepFile(input.file, input.text, options));
  const phases = files.flatMap((file) => file.phases);
  const byName = new Map<string, PhaseSpec>();
  for (const phase of phases) {
    const earlier = byName.get(phase.name);
    if (earlier) {
      throw new ConfigError(
        { file: phase.file, line: phase.line, column: 1 },
        phase.name,
        `phase "${phase.name}" is already defined at ${earlier.file}:${earlier.line}; phase names must be unique across the sweep`,
      );
    }
    byName.set(phase.name, phase);
  }
  for (const phase of phases) {
    for (const dependency of phase.after) {
      if (!byName.has(dependency)) {
        throw new ConfigError(
          { file: phase.file, line: phase.line, column: 1 },
          `${phase.name}.after`,
          `unknown phase "${dependency}"${didYouMean(dependency, byName.keys())}. Phases: ${[...byName.keys()].join(", ")}`,
        );
      }
    }
  }
  rejectCycles(phases, byName);
  return { files: files.map((file) => file.file), phases };
}

function rejectCycles(phases: PhaseSpec[], byName: Map<string, PhaseSpec>): void {
  const state = new Map<string, "visiting" | "done">();
  const visit = (phase: PhaseSpec, trail: string[]): void => {
    if (state.get(phase.name) === "done") return;
    if (state.get(phase.name) === "visiting") {
      const cycle = [...trail.slice(trail.indexOf(phase.name)), phase.name].join(" → ");
      throw new ConfigError(
        { file: phase.file, line: phase.line, column: 1 },
        `${phase.name}.after`,
        `phases wait on each other in a cycle: ${cycle}`,
      );
    }
    state.set(phase.name, "visiting");
    for (const name of phase.after) visit(byName.get(name) as PhaseSpec, [...trail, phase.name]);
    state.set(phase.name, "done");
  };
  for (const phase of phases) visit(phase, []);
}

/** Parses and validates one config file in the original system's format plus labsweep's keys. */
export function parseSweepFile(file: string, text: string, options: LoadOptions = {}): SweepFile {
  const source = parseYamlSource(file, text);
  const data = source.data;
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw source.error(
      [],
      `a sweep config is a mapping of settings (${Object.keys(FILE_KEYS).join(", ")}) and phases`,
    );
  }
  const record = data as Record<string, unknown>;
  const settingsInput: Record<string, unknown> = {};
  const phaseNames: string[] = [];
  for (const key of Object.keys(record)) {
    if (key in FILE_KEYS) settingsInput[key] = record[key];
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
  return { file, phases };
}

function buildPhase(
  source: YamlSource,
  name: string,
  raw: unknown,
  settings: FileSettingsInput,
  options: LoadOptions,
): PhaseSpec {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    const hint = didYouMean(name, Object.keys(FILE_KEYS));
    throw source.error(
      [name],
      hint
        ? `unknown setting "${name}"${hint} Settings: ${Object.keys(FILE_KEYS).join(", ")}`
        : `phase "${name}" must be a mapping with keys such as combinations, defaults and output_dir`,
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
  if (settings.seeds && !listsSeed) axes.unshift({ name: "seed", values: settings.seeds });

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
  checkPlaceholders(source, input.command ? [name, "command"] : ["command"], commandTemplate, known);
  checkPlaceholders(
    source,
    input.output_dir ? [name, "output_dir"] : ["output_dir"],
    outputDirTemplate,
    new Set([...known, "phase"]),
  );
  return {
    name,
    file: source.file,
    line: source.placeOf([name], "key").line,
    baseDir: dirname(resolve(source.file)),
    defaults,
    axes,
    outputDirTemplate,
    commandTemplate,
    after: input.after ?? [],
    gate: toGate(input.gate),
    policy: toPolicy(input, settings),
  };
}

function rejectRepeatedAxes(source: YamlSource, phase: string, axes: Array<{ name: string }>): void {
  const seen = new Set<string>();
  for (const [index, axisEntry] of axes.entries()) {
    if (seen.has(axisEntry.name)) {
      throw source.error(
        [phase, "combinations", index],
        `parameter "${axisEntry.name}" is listed twice in combinations`,
      );
    }
    seen.add(axisEntry.name);
  }
}

function checkPlaceholders(source: YamlSource, path: string[], template: string, known: Set<string>): void {
  for (const placeholder of placeholderNames(template)) {
    if (!known.has(placeholder)) {
      const names = [...known].sort().join(", ") || "(none)";
      throw source.error(
        path,
        `undefined placeholder {${placeholder}}${didYouMean(placeholder, known)} Defined: ${names}`,
      );
    }
  }
}

function toGate(input: PhaseInput["gate"]): Gate {
  if (input === undefined || input === "all_succeeded") return { kind: "all_succeeded" };
  return { kind: "min_success", ratio: input.min_success };
}

function toPolicy(phase: PhaseInput, file: FileSettingsInput): RunPolicy {
  const timeout = phase.timeout ?? file.timeout;
  const backoff = phase.backoff ?? file.backoff;
  const resources = { ...file.resources, ...phase.resources };
  return {
    retries: phase.retries ?? file.retries ?? 3,
    timeoutMs: timeout === undefined ? null : parseDuration(timeout),
    backoffMs: backoff === undefined ? 1000 : (parseDuration(backoff) as number),
    resources: {
      gpus: resources.gpus ?? null,
      gpuMemoryGb: resources.gpu_memory_gb ?? 0,
      cpus: resources.cpus ?? 1,
    },
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
  if (issue.code === "unrecognized_keys") {
    const key = issue.keys[0] as string;
    const keyPath = [...path, key];
    const scope = keyPath.includes("resources") ? RESOURCE_KEYS : allowed;
    const listing = Object.entries(scope)
      .map(([name, fallback]) => `${name} (default: ${fallback})`)
      .join(", ");
    let hint = didYouMean(key, Object.keys(scope));
    if (!hint && phaseName && base.length === 1 && path.length === 1) {
      const setting = didYouMean(phaseName, Object.keys(FILE_KEYS));
      if (setting)
        hint = ` (is the phase name "${phaseName}" a misspelt setting${setting.replace(" — ", "; ")})`;
    }
    throw source.error(keyPath, `unknown key "${key}"${hint}. Allowed keys: ${listing}`, "key");
  }
  throw source.error(path, describeIssue(issue));
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === "invalid_type") return `expected ${issue.expected}`;
  if (issue.code === "invalid_union")
    return "has an invalid value (see the config reference in docs/config.md)";
  if (issue.code === "too_small" && issue.origin === "number")
    return `must be ${issue.inclusive ? "≥" : ">"} ${issue.minimum}`;
  if (issue.code === "too_big" && issue.origin === "number")
    return `must be ${issue.inclusive ? "≤" : "<"} ${issue.maximum}`;
  return issue.message;
}
