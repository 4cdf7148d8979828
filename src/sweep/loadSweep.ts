import { dirname, resolve } from "node:path";
import { overridePhase, type ResolvedOverride, rejectUnapplied, resolveOverrides } from "./applyOverrides.js";
import { closest, didYouMean } from "./closest.js";
import { checkShellSafety, rejectNulValues } from "./commandSafety.js";
import { toEnv } from "./envSetting.js";
import { describeValue } from "./errorWording.js";
import { checkLauncherCommand } from "./launcherSetting.js";
import { toNotifyEntries } from "./notifySetting.js";
import { parseOverride } from "./overrides.js";
import {
  checkPlaceholders,
  rejectRepeatedAxes,
  rejectReservedNames,
  writtenSpellings,
} from "./phaseParams.js";
import { toGate, toOnOom, toPolicy } from "./runPolicy.js";
import {
  FILE_KEYS,
  type FileSettingsInput,
  fileSettingsSchema,
  PHASE_KEYS,
  type PhaseInput,
  phaseSchema,
} from "./schema.js";
import { validate } from "./schemaIssues.js";
import { placeholderNames } from "./template.js";
import type { NotifyEntry, Params, ParamValue, PhaseSpec, SweepFile } from "./types.js";
import { parseYamlSource, type YamlSource } from "./yamlSource.js";

export interface LoadOptions {
  /** Command template for configs that declare none (the original system's configs). */
  defaultCommand?: string | undefined;
  /**
   * `--set` flags as given, `[PHASE.]PARAM=VALUES`, applied to each phase before its grid is
   * built (overrides.ts, applyOverrides.ts). (Default: none)
   */
  overrides?: readonly string[] | undefined;
}

/** The overrides of one load, and every parameter its phases have (for "did you mean"). */
interface OverrideContext {
  resolved: ResolvedOverride[];
  known: Set<string>;
}

/** A whole sweep: every phase of every config file, validated together. */
export interface Sweep {
  files: string[];
  phases: PhaseSpec[];
  /** The `notify:` entries of every file, in file order: each applies to the whole sweep. */
  notify: NotifyEntry[];
  /** The config files with `snapshot: true`, whose tasks run from a copy of their dir. (Default: none) */
  snapshots?: string[];
}

/** Validates several config files as one sweep: phase names unique, `after` refers to real phases, no cycles. */
export function loadSweep(
  inputs: ReadonlyArray<{ file: string; text: string }>,
  options: LoadOptions = {},
): Sweep {
  const sources = inputs.map((input) => parseYamlSource(input.file, input.text));
  const context = overrideContext(sources, options);
  const parsed = sources.map((source) => parseWithSource(source, options, context));
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
  rejectUnapplied(context.resolved, [...byName.keys()], context.known, { commandOnly: false });
  return {
    files: parsed.map(({ sweepFile }) => sweepFile.file),
    phases,
    notify: parsed.flatMap(({ sweepFile }) => sweepFile.notify ?? []),
    snapshots: parsed.flatMap(({ sweepFile }) => (sweepFile.snapshot ? [sweepFile.file] : [])),
  };
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
  const source = parseYamlSource(file, text);
  const context = overrideContext([source], options);
  const { sweepFile } = parseWithSource(source, options, context);
  rejectUnapplied(
    context.resolved,
    sweepFile.phases.map((phase) => phase.name),
    context.known,
    { commandOnly: false },
  );
  return sweepFile;
}

/** The --set flags resolved against the phase names of these files. */
function overrideContext(sources: readonly YamlSource[], options: LoadOptions): OverrideContext {
  const names = sources.flatMap((source) =>
    source.data !== null && typeof source.data === "object" && !Array.isArray(source.data)
      ? Object.keys(source.data).filter((key) => !Object.hasOwn(FILE_KEYS, key))
      : [],
  );
  return {
    resolved: resolveOverrides((options.overrides ?? []).map(parseOverride), names),
    known: new Set(),
  };
}

const SETTINGS_LIST = Object.keys(FILE_KEYS).join(", ");

function parseWithSource(
  source: YamlSource,
  options: LoadOptions,
  context: OverrideContext,
): { sweepFile: SweepFile; source: YamlSource } {
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
  const phases = phaseNames.map((name) => buildPhase(source, name, record[name], settings, options, context));
  const notify = toNotifyEntries(source, settings);
  const sweepFile: SweepFile = {
    file: source.file,
    phases,
    ...(notify.length > 0 ? { notify } : {}),
    ...(settings.snapshot ? { snapshot: true as const } : {}),
  };
  return { sweepFile, source };
}

export function buildPhase(
  source: YamlSource,
  name: string,
  raw: unknown,
  settings: FileSettingsInput,
  options: LoadOptions,
  context: OverrideContext,
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
  const yaml = yamlAxes(source, name, input, settings);
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
  const { axes, writtenAs } = applyOverrides(context, name, defaults, [commandTemplate, outputDirTemplate], {
    axes: yaml.axes,
    writtenAs: writtenSpellings(source, name, input, settings, yaml.axes, yaml.seedsAxis),
  });
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
  const baseDir = dirname(resolve(source.file));
  const onOom = toOnOom(source, name, input, settings, { defaults, axes, commandTemplate, writtenAs });
  const env = toEnv(source, name, input, settings, { params: known, commandTemplate, writtenAs });
  return {
    name,
    file: source.file,
    line: source.placeOf([name], "key").line,
    baseDir,
    defaults,
    axes,
    outputDirTemplate,
    commandTemplate,
    ...(writtenAs ? { writtenAs } : {}),
    after: input.after ?? [],
    gate: toGate(input.gate),
    priority: input.priority ?? 0,
    policy: { ...toPolicy(input, settings, baseDir), ...(onOom ? { onOom } : {}), ...(env ? { env } : {}) },
  };
}

/** The phase's axes as the YAML gives them: its combinations, after the legacy `seeds` axis. */
function yamlAxes(
  source: YamlSource,
  name: string,
  input: PhaseInput,
  settings: FileSettingsInput,
): { axes: PhaseSpec["axes"]; seedsAxis: boolean } {
  const axes = (input.combinations ?? []).map((entry) => {
    const [param, values] = Object.entries(entry)[0] as [string, unknown[]];
    return { name: param, values: values as ParamValue[] };
  });
  rejectRepeatedAxes(source, name, axes);
  const listsSeed = axes.some((axisEntry) => axisEntry.name === "seed");
  const seedsAxis = settings.seeds !== undefined && !listsSeed;
  if (seedsAxis) axes.unshift({ name: "seed", values: settings.seeds as ParamValue[] });
  return { axes, seedsAxis };
}

/**
 * The phase's axes and spellings after the --set overrides that reach it; records what the phase
 * has, for the "did you mean" of an override no phase takes.
 */
function applyOverrides(
  context: OverrideContext,
  phase: string,
  defaults: Params,
  templates: string[],
  yaml: { axes: PhaseSpec["axes"]; writtenAs: PhaseSpec["writtenAs"] },
): { axes: PhaseSpec["axes"]; writtenAs: PhaseSpec["writtenAs"] } {
  const has = new Set([
    ...Object.keys(defaults),
    ...yaml.axes.map((axis) => axis.name),
    ...templates.flatMap(placeholderNames),
  ]);
  has.delete("phase");
  for (const param of has) context.known.add(param);
  return overridePhase(phase, has, context.resolved, yaml.axes, yaml.writtenAs);
}
