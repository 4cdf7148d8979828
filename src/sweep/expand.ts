import { resolve } from "node:path";
import { signatureOf, signaturePiece } from "./canonical.js";
import {
  commandTemplateProblem,
  compileTemplate,
  placeholderNames,
  type QuoteContext,
  renderTemplate,
  shellQuoteText,
  type TemplatePart,
  valueText,
} from "./template.js";
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
  // loadSweep refuses such templates; a phase built by hand must not slip past that either.
  const unsafe = commandTemplateProblem(phase.commandTemplate);
  if (unsafe) throw new Error(`phase "${phase.name}": ${unsafe.detail}`);
  const outputDirs = new Map<string, string>();
  const text = textIn(phase);
  const render = {
    command: memoisedRenderer(phase.commandTemplate, (value, name, context) =>
      shellQuoteText(text(value, name), context),
    ),
    outputDir: memoisedRenderer(phase.outputDirTemplate, (value, name) => text(value, name), {
      phase: phase.name,
    }),
  };
  const sign = memoisedSigner(phase.commandTemplate);
  const digits = new Array<number>(phase.axes.length).fill(0);
  const axes = phase.axes;
  for (let n = 0; n < total; n++) {
    const params: Params = { ...phase.defaults };
    // Indexed loops: this runs once per task, and iterator objects per task add up at a million.
    for (let i = 0; i < axes.length; i++) {
      const axis = axes[i] as (typeof axes)[number];
      params[axis.name] = axis.values[digits[i] as number] as ParamValue;
    }
    yield taskFor(phase, params, outputDirs, render, sign);
    advance(digits, phase);
  }
}

type Quote = (value: ParamValue, name: string, context: QuoteContext) => string;

/**
 * Renders a template for many parameter sets: each placeholder's text is computed once per
 * distinct value (values repeat across a grid), so rendering is string concatenation.
 */
function memoisedRenderer(template: string, quote: Quote, fixed: Params = {}): (values: Params) => string {
  const parts = compileTemplate(template);
  const memo = parts.map(() => new Map<ParamValue, string>());
  return (values) => {
    let out = "";
    for (let index = 0; index < parts.length; index++) {
      const part = parts[index] as TemplatePart;
      if (typeof part === "string") {
        out += part;
        continue;
      }
      let value = values[part.name];
      if (value === undefined) value = fixed[part.name];
      if (value === undefined) throw new Error(`undefined placeholder {${part.name}}`);
      const seen = memo[index] as Map<ParamValue, string>;
      let rendered = seen.get(value);
      if (rendered === undefined) {
        rendered = quote(value, part.name, part.context);
        if (seen.size < MEMO_LIMIT) seen.set(value, rendered);
      }
      out += rendered;
    }
    return out;
  };
}

/** taskSignature with each parameter's signed piece computed once per distinct value. */
function memoisedSigner(commandTemplate: string): (params: Params) => string {
  let keys: string[] | null = null;
  const memo = new Map<string, Map<ParamValue, string>>();
  return (params) => {
    if (!keys) keys = Object.keys(params).sort();
    const pieces = keys.map((key) => {
      const value = params[key] as ParamValue;
      let seen = memo.get(key);
      if (!seen) {
        seen = new Map();
        memo.set(key, seen);
      }
      let piece = seen.get(value);
      if (piece === undefined) {
        piece = signaturePiece(key, value);
        if (seen.size < MEMO_LIMIT) seen.set(value, piece);
      }
      return piece;
    });
    return signatureOf(pieces, commandTemplate);
  };
}

const MEMO_LIMIT = 100_000;

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

function taskFor(
  phase: PhaseSpec,
  params: Params,
  outputDirs: Map<string, string>,
  render: { command: (values: Params) => string; outputDir: (values: Params) => string },
  sign: (params: Params) => string,
): TaskSpec {
  const renderedDir = render.outputDir(params);
  let outputDir = outputDirs.get(renderedDir);
  if (outputDir === undefined) {
    outputDir = resolve(phase.baseDir, renderedDir);
    outputDirs.set(renderedDir, outputDir);
  }
  return {
    signature: sign(params),
    params,
    command: render.command(params),
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
