import { resolve } from "node:path";
import { type CompiledGrid, compileGrid } from "./compiledGrid.js";
import { commandTemplateProblem, placeholderNames, renderTemplate, valueText } from "./template.js";
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
  for (const { grid, digits } of gridPoints(phase)) {
    yield {
      signature: grid.signature(digits),
      params: grid.params(digits),
      command: grid.command(digits),
      cwd: phase.baseDir,
      configFile: phase.file,
      placement: { phase: phase.name, outputDir: grid.outputDir(digits) },
      policy: phase.policy,
    };
  }
}

/** One task of a phase as `plan` counts it: reused from task to task, so copy what you keep. */
export interface GridPoint {
  signature: string;
  outputDir: string;
  /** The task's parameters (built on demand: most plans never need them). */
  params(): Params;
}

/** expandPhase for counting: each task's signature and output dir, no command or task object. */
export function* phaseSignatures(phase: PhaseSpec): Generator<GridPoint> {
  let walk: { grid: CompiledGrid; digits: readonly number[] } | undefined;
  const point: GridPoint = {
    signature: "",
    outputDir: "",
    params: () => (walk ? walk.grid.params(walk.digits) : {}),
  };
  for (const at of gridPoints(phase)) {
    walk = at;
    point.signature = at.grid.signature(at.digits);
    point.outputDir = at.grid.outputDir(at.digits);
    yield point;
  }
}

/** The phase's grid points in order: its compiled grid and the digits, advanced in place. */
function* gridPoints(phase: PhaseSpec): Generator<{ grid: CompiledGrid; digits: readonly number[] }> {
  const total = gridSize(phase);
  // loadSweep refuses such templates; a phase built by hand must not slip past that either.
  const unsafe = commandTemplateProblem(phase.commandTemplate);
  if (unsafe) throw new Error(`phase "${phase.name}": ${unsafe.detail}`);
  const grid = compileGrid(phase, textIn(phase));
  const digits = new Array<number>(phase.axes.length).fill(0);
  const point = { grid, digits };
  for (let n = 0; n < total; n++) {
    yield point;
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
  return spelledText(phase.writtenAs);
}

/** A value's text: as `written` records its spelling, else its plain text. */
export function spelledText(written: PhaseSpec["writtenAs"]): TextOf {
  if (!written) return valueText;
  return (value, name) => {
    const spellings = written[name];
    return (spellings && typeof value !== "string" && spellings[JSON.stringify(value)]) || valueText(value);
  };
}

type TextOf = (value: ParamValue, name: string) => string;

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
      dirs.add(
        resolve(
          phase.baseDir,
          renderTemplate(phase.outputDirTemplate, { ...params, phase: phase.name }, text),
        ),
      );
      return;
    }
    const axis = axes[depth] as (typeof axes)[number];
    for (const value of axis.values) visit(depth + 1, { ...params, [axis.name]: value });
  };
  visit(0, { ...phase.defaults });
  return [...dirs];
}
