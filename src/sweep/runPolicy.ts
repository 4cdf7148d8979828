import { resolve } from "node:path";
import { didYouMean } from "./closest.js";
import { parseDuration } from "./duration.js";
import { describeValue, endSentence } from "./errorWording.js";
import { toLauncher } from "./launcherSetting.js";
import type { FileSettingsInput, PhaseInput } from "./schema.js";
import { type StopSignal, toStopSignal } from "./stopSignal.js";
import {
  DEFAULT_ARTIFACT_LIMIT_MB,
  DEFAULT_MAX_LOST,
  type Gate,
  type OnOom,
  type Params,
  type ParamValue,
  type RunPolicy,
} from "./types.js";
import type { YamlSource } from "./yamlSource.js";

// A phase's gate and run policy (with on_oom, checked against its parameters): its own settings over the file's, with labsweep's defaults.

export function toGate(input: PhaseInput["gate"]): Gate {
  if (input === undefined || input === "all_succeeded") return { kind: "all_succeeded" };
  return { kind: "min_success", ratio: input.min_success };
}

export function toPolicy(phase: PhaseInput, file: FileSettingsInput, baseDir: string): RunPolicy {
  const timeout = phase.timeout ?? file.timeout;
  const backoff = phase.backoff ?? file.backoff;
  const resources = { ...file.resources, ...phase.resources };
  return {
    retries: phase.retries ?? file.retries ?? 3,
    maxLost: phase.max_lost ?? file.max_lost ?? DEFAULT_MAX_LOST,
    ...maxFailures(phase.max_failures ?? file.max_failures),
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
    // Like launcher: a phase's list replaces the file's (`[]` collects nothing).
    artifacts: phase.artifacts ?? file.artifacts ?? [],
    artifactLimitMb: phase.artifact_limit_mb ?? file.artifact_limit_mb ?? DEFAULT_ARTIFACT_LIMIT_MB,
    ...stopPolicy(phase, file, baseDir),
  };
}

/** Only where set, so a policy (and the ledger's copy of it) reads as before elsewhere. */
function maxFailures(value: number | undefined): Pick<RunPolicy, "maxFailures"> {
  return value === undefined ? {} : { maxFailures: value };
}

/**
 * checkpoint_root, stop_signal, stop_grace and hang_timeout: only the ones a config sets, so a
 * policy (and the ledger's copy of it) reads as before where none is used.
 */
function stopPolicy(
  phase: PhaseInput,
  file: FileSettingsInput,
  baseDir: string,
): Pick<RunPolicy, "checkpointRoot" | "stopSignal" | "stopGraceMs" | "hangTimeoutMs"> {
  const root = phase.checkpoint_root ?? file.checkpoint_root;
  const signal = phase.stop_signal ?? file.stop_signal;
  const grace = phase.stop_grace ?? file.stop_grace;
  const hang = phase.hang_timeout ?? file.hang_timeout;
  return {
    ...(root !== undefined && { checkpointRoot: resolve(baseDir, root) }),
    ...(signal !== undefined && { stopSignal: toStopSignal(signal) as StopSignal }),
    ...(grace !== undefined && { stopGraceMs: parseDuration(grace) as number }),
    ...(hang !== undefined && { hangTimeoutMs: parseDuration(hang) as number }),
  };
}

/** What `on_oom` needs to know of its phase: its parameters and how its command is rendered. */
export interface OomContext {
  defaults: Params;
  axes: ReadonlyArray<{ name: string; values: readonly ParamValue[] }>;
  commandTemplate: string;
  writtenAs: Record<string, Record<string, string>> | undefined;
}

/**
 * The phase's `on_oom` (its own, else the file's), checked against its parameters: `param` must
 * be one of them, every value of it a number. Undefined when neither sets one.
 */
export function toOnOom(
  source: YamlSource,
  phase: string,
  input: PhaseInput,
  file: FileSettingsInput,
  context: OomContext,
): OnOom | undefined {
  const setting = input.on_oom ?? file.on_oom;
  if (setting === undefined) return undefined;
  const at = input.on_oom ? [phase, "on_oom", "param"] : ["on_oom", "param"];
  const { param } = setting;
  const axis = context.axes.find((entry) => entry.name === param);
  const values = axis
    ? axis.values
    : Object.hasOwn(context.defaults, param)
      ? [context.defaults[param]]
      : null;
  if (values === null) {
    const names = [
      ...new Set([...Object.keys(context.defaults), ...context.axes.map((entry) => entry.name)]),
    ];
    const from = input.on_oom ? "" : " (the file-level on_oom; set on_oom in the phases that have it)";
    throw source.error(
      at,
      `on_oom: phase "${phase}" has no parameter "${param}"${from}${endSentence(didYouMean(param, names))}Parameters: ${names.join(", ") || "(none)"}`,
    );
  }
  const bad = values.find((value) => typeof value !== "number" || !Number.isFinite(value));
  if (bad !== undefined) {
    throw source.error(
      at,
      `on_oom: parameter "${param}" of phase "${phase}" must have numeric values to be scaled, but one is ${describeValue(bad)}`,
    );
  }
  return {
    param,
    factor: setting.factor ?? 0.5,
    min: setting.min ?? 1,
    commandTemplate: context.commandTemplate,
    ...(context.writtenAs ? { writtenAs: context.writtenAs } : {}),
  };
}
