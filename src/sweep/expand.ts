import { resolve } from "node:path";
import { taskSignature } from "./canonical.js";
import { placeholderNames, renderTemplate, shellQuoteText, valueText } from "./template.js";
import type { Params, ParamValue, PhaseSpec, TaskSpec } from "./types.js";

/** How many tasks a phase's grid has, before de-duplication. */
export function gridSize(phase: PhaseSpec): number {
  return phase.axes.reduce((product, axis) => product * axis.values.length, 1);
}

/**
 * The phase's tasks in itertools.product order (the last axis varies fastest), lazily, so a
 * million-task grid never sits in memory at once. Effective parameters are file defaults ←
 * phase defaults ← one combination.
 */
export function* expandPhase(phase: PhaseSpec): Generator<TaskSpec> {
  const total = gridSize(phase);
  const outputDirs = new Map<string, string>();
  const text = textIn(phase);
  const digits = new Array<number>(phase.axes.length).fill(0);
  for (let n = 0; n < total; n++) {
    const params: Params = { ...phase.defaults };
    for (const [i, axis] of phase.axes.entries())
      params[axis.name] = axis.values[digits[i] as number] as ParamValue;
    yield taskFor(phase, params, outputDirs, text);
    advance(digits, phase);
  }
}

function advance(digits: number[], phase: PhaseSpec): void {
  for (let i = digits.length - 1; i >= 0; i--) {
    const next = (digits[i] as number) + 1;
    if (next < (phase.axes[i]?.values.length as number)) {
      digits[i] = next;
      return;
    }
    digits[i] = 0;
  }
}

/** A value's text in templates: as written in the config when recorded, else its plain text. */
function textIn(phase: PhaseSpec): TextOf {
  const written = phase.writtenAs;
  if (!written) return valueText;
  return (value, name) => {
    const spellings = written[name];
    return (spellings && typeof value !== "string" && spellings[JSON.stringify(value)]) || valueText(value);
  };
}

type TextOf = (value: ParamValue, name: string) => string;

function renderOutputDir(phase: PhaseSpec, params: Params, text: TextOf): string {
  return renderTemplate(phase.outputDirTemplate, { ...params, phase: phase.name }, text);
}

function taskFor(phase: PhaseSpec, params: Params, outputDirs: Map<string, string>, text: TextOf): TaskSpec {
  const renderedDir = renderOutputDir(phase, params, text);
  let outputDir = outputDirs.get(renderedDir);
  if (outputDir === undefined) {
    outputDir = resolve(phase.baseDir, renderedDir);
    outputDirs.set(renderedDir, outputDir);
  }
  return {
    signature: taskSignature(params, phase.commandTemplate),
    params,
    command: renderTemplate(phase.commandTemplate, params, (value, name, context) =>
      shellQuoteText(text(value, name), context),
    ),
    cwd: phase.baseDir,
    configFile: phase.file,
    placement: { phase: phase.name, outputDir },
    policy: phase.policy,
  };
}

/**
 * The distinct output dirs a phase writes to, computed from only the axes its output_dir
 * template uses, so checking them costs nothing even for a million-task grid.
 */
export function outputDirsOf(phase: PhaseSpec): string[] {
  const used = new Set(placeholderNames(phase.outputDirTemplate));
  const axes = phase.axes.filter((axis) => used.has(axis.name));
  const dirs = new Set<string>();
  const text = textIn(phase);
  const visit = (depth: number, params: Params): void => {
    if (depth === axes.length) {
      dirs.add(resolve(phase.baseDir, renderOutputDir(phase, params, text)));
      return;
    }
    const axis = axes[depth] as (typeof axes)[number];
    for (const value of axis.values) visit(depth + 1, { ...params, [axis.name]: value });
  };
  visit(0, { ...phase.defaults });
  return [...dirs];
}
