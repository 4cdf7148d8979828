import { didYouMean } from "./closest.js";
import { describeValue, endSentence } from "./errorWording.js";
import { pythonEntryProblem } from "./launcher.js";
import {
  type FileSettingsInput,
  LAUNCHER_KEYS,
  LAUNCHER_NAMES,
  type LauncherInput,
  MIXED_PRECISIONS,
  type PhaseInput,
} from "./schema.js";
import type { LauncherSpec } from "./types.js";
import type { YamlSource } from "./yamlSource.js";

// The `launcher:` setting: what a valid value asks for, what is wrong with an invalid one, and
// the rule it puts on the command.

/** With a launcher, the command must start with a Python script or module (see launcher.ts). */
export function checkLauncherCommand(
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
export function toLauncher(input: LauncherInput | undefined): LauncherSpec | null {
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

const LAUNCHER_FORM =
  "expected none, accelerate or torchrun, or a mapping such as {name: accelerate, mixed_precision: bf16}";

/** Where inside a `launcher:` value it is wrong, and why. */
interface LauncherProblem {
  path: Array<string | number>;
  message: string;
  at: "key" | "value";
}

/** What is wrong with a `launcher:` value zod rejected, and where inside it. */
export function launcherProblem(value: unknown): LauncherProblem {
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
  return (
    unknownLauncherKey(name, record) ??
    launcherValueProblem(record) ?? {
      path: [],
      message: `${LAUNCHER_FORM}; got an invalid mapping`,
      at: "value",
    }
  );
}

/** A key the named launcher does not take, with a hint when it is the other launcher's. */
function unknownLauncherKey(
  name: "accelerate" | "torchrun",
  record: Record<string, unknown>,
): LauncherProblem | null {
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
  return null;
}

/** A launcher setting whose value is of the wrong form. */
function launcherValueProblem(record: Record<string, unknown>): LauncherProblem | null {
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
  return null;
}
