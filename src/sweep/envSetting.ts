import { taskSignature } from "./canonical.js";
import { didYouMean } from "./closest.js";
import { endSentence } from "./errorWording.js";
import { spelledText } from "./expand.js";
import type { FileSettingsInput, PhaseInput } from "./schema.js";
import { placeholderNames, renderTemplate } from "./template.js";
import type { EnvSetting, Params, ParamValue } from "./types.js";
import type { YamlSource } from "./yamlSource.js";

// `env:`: variables set in each task's environment, rendered per task from templates. Run
// policy like `launcher`, never part of a task's identity: changing them reruns nothing.

/** Placeholders every `env` value may use besides the task's parameters. */
export const ENV_BUILTINS = ["task_id", "signature", "group", "phase"] as const;

/** The parameter `{group}` leaves out: tasks that differ only in it share a group. */
export const SEED_PARAM = "seed";

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Variables labsweep sets itself for each task: an `env` entry could only break them. */
const OWN_VARIABLES: Record<string, string> = {
  CUDA_VISIBLE_DEVICES: "labsweep sets it to the GPUs it gives the task",
  CUDA_DEVICE_ORDER: "labsweep sets it to PCI_BUS_ID so GPU ids match nvidia-smi's",
};

/** What `env` needs of its phase: its parameters and how its command is rendered. */
export interface EnvContext {
  params: ReadonlySet<string>;
  commandTemplate: string;
  writtenAs: Record<string, Record<string, string>> | undefined;
}

/**
 * The phase's `env`: the file-level map, with the phase's map over it key by key. Each name must
 * be an environment variable name not starting with LABSWEEP_ (labsweep's own), each
 * `{placeholder}` a parameter of the phase or a built-in. Undefined when neither sets one.
 */
export function toEnv(
  source: YamlSource,
  phase: string,
  input: PhaseInput,
  file: FileSettingsInput,
  context: EnvContext,
): EnvSetting | undefined {
  if (input.env === undefined && file.env === undefined) return undefined;
  const vars: Record<string, string> = {};
  const where: Record<string, ReadonlyArray<string>> = {};
  for (const [map, path] of [
    [file.env, ["env"]],
    [input.env, [phase, "env"]],
  ] as const) {
    for (const [name, value] of Object.entries(map ?? {})) {
      checkName(source, [...path, name], name);
      vars[name] = String(value);
      where[name] = [...path, name];
    }
  }
  for (const [name, template] of Object.entries(vars)) {
    checkPlaceholders(source, where[name] as ReadonlyArray<string>, phase, template, context.params);
  }
  return {
    vars,
    commandTemplate: context.commandTemplate,
    ...(context.writtenAs ? { writtenAs: context.writtenAs } : {}),
  };
}

function checkName(source: YamlSource, path: ReadonlyArray<string>, name: string): void {
  if (!ENV_NAME.test(name)) {
    throw source.error(
      path,
      `"${name}" is not an environment variable name: use letters, digits and _, not starting with a digit`,
      "key",
    );
  }
  if (name.toUpperCase().startsWith("LABSWEEP_")) {
    throw source.error(path, `"${name}": names starting with LABSWEEP_ are labsweep's own`, "key");
  }
  const own = OWN_VARIABLES[name];
  if (own) throw source.error(path, `"${name}" cannot be set: ${own}`, "key");
}

function checkPlaceholders(
  source: YamlSource,
  path: ReadonlyArray<string>,
  phase: string,
  template: string,
  params: ReadonlySet<string>,
): void {
  const known = [...ENV_BUILTINS, ...params];
  for (const placeholder of placeholderNames(template)) {
    if ((ENV_BUILTINS as readonly string[]).includes(placeholder) && params.has(placeholder)) {
      throw source.error(
        path,
        `{${placeholder}} is both a parameter of phase "${phase}" and a built-in: rename the parameter`,
      );
    }
    if (known.includes(placeholder)) continue;
    throw source.error(
      path,
      `{${placeholder}} is neither a parameter of phase "${phase}" nor a built-in${endSentence(didYouMean(placeholder, known))}Placeholders: ${known.join(", ")}`,
    );
  }
}

/** What a task's `env` is rendered from. */
export interface EnvTask {
  taskId: number;
  signature: string;
  /** The declared parameters (before any on_oom scaling), so `{group}` is the same for every attempt. */
  params: Params;
  /** The phase that declares the task (whose policy it runs with). */
  phase: string;
}

/** The task's `env` variables: each template with its placeholders filled in, as plain text. */
export function renderEnv(setting: EnvSetting, task: EnvTask): Record<string, string> {
  const text = spelledText(setting.writtenAs);
  const values: Params = {
    ...task.params,
    task_id: task.taskId,
    signature: task.signature,
    group: taskGroup(task.params, setting.commandTemplate),
    phase: task.phase,
  };
  const out: Record<string, string> = {};
  for (const [name, template] of Object.entries(setting.vars)) {
    out[name] = renderTemplate(template, values, (value: ParamValue, key: string) => text(value, key));
  }
  return out;
}

/**
 * `{group}`: the signature the task would have without its `seed` parameter, so the seeds of one
 * configuration share it and any other difference parts them. Signed as signatures are
 * (canonical.ts): a task with no seed has its own signature as its group.
 */
export function taskGroup(params: Params, commandTemplate: string): string {
  const { [SEED_PARAM]: _seed, ...rest } = params;
  return taskSignature(rest, commandTemplate);
}
