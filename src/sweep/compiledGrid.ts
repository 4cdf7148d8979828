import { resolve } from "node:path";
import { signaturePiece, signer } from "./canonical.js";
import { compileTemplate, type QuoteContext, shellQuoteText, type TemplatePart } from "./template.js";
import type { Params, ParamValue, PhaseSpec } from "./types.js";

/**
 * A phase's grid made ready to expand: every task is a list of digits (one value index per
 * axis), and whatever a task's signature, command or output dir needs of a value is worked out
 * once per value, indexed by axis and digit, so a task costs string concatenation and one hash.
 * A million-task grid spent most of its expansion on Map lookups and per-task arrays.
 */
export interface CompiledGrid {
  params(digits: readonly number[]): Params;
  signature(digits: readonly number[]): string;
  command(digits: readonly number[]): string;
  /** The output dir, resolved against the config's dir. */
  outputDir(digits: readonly number[]): string;
}

/** Where a parameter's value comes from: an axis (by index), else a fixed value. */
type Source = { axis: number } | { fixed: ParamValue };

type Axes = PhaseSpec["axes"];

/** A text made from a parameter's value: one per axis value (made on first use), or fixed. */
interface ValueText {
  describe: (value: ParamValue) => string;
  fixed?: string;
  axis?: number;
  texts?: Array<string | undefined>;
}

function valueText(source: Source, describe: (value: ParamValue) => string, axes: Axes): ValueText {
  if ("fixed" in source) return { describe, fixed: describe(source.fixed) };
  return { describe, axis: source.axis, texts: new Array(axes[source.axis]?.values.length ?? 0) };
}

function textAt(entry: ValueText, axes: Axes, digits: readonly number[]): string {
  if (entry.fixed !== undefined) return entry.fixed;
  const axis = entry.axis as number;
  const texts = entry.texts as Array<string | undefined>;
  const digit = digits[axis] as number;
  let found = texts[digit];
  if (found === undefined) {
    found = entry.describe(axes[axis]?.values[digit] as ParamValue);
    texts[digit] = found;
  }
  return found;
}

/** Where each parameter comes from, in the key order layering gives: defaults', then new axes'. */
function parameterSources(phase: PhaseSpec): Map<string, Source> {
  const sources = new Map<string, Source>();
  for (const [name, value] of Object.entries(phase.defaults))
    sources.set(name, { fixed: value as ParamValue });
  // A later axis of the same name wins, as when params are layered in order.
  for (const [index, axis] of phase.axes.entries()) sources.set(axis.name, { axis: index });
  return sources;
}

/** A template's renderer over grid points; `fixed` holds placeholders that are no parameter. */
function renderer(
  template: string,
  quote: (value: ParamValue, name: string, context: QuoteContext) => string,
  sources: Map<string, Source>,
  axes: Axes,
  fixed: Params = {},
): (digits: readonly number[]) => string {
  const parts = compileTemplate(template).map((part: TemplatePart): ValueText => {
    if (typeof part === "string") return { describe: String, fixed: part };
    const source: Source | undefined =
      sources.get(part.name) ?? (part.name in fixed ? { fixed: fixed[part.name] as ParamValue } : undefined);
    if (source === undefined) throw new Error(`undefined placeholder {${part.name}}`);
    return valueText(source, (value) => quote(value, part.name, part.context), axes);
  });
  return (digits) => {
    let out = "";
    for (const part of parts) out += textAt(part, axes, digits);
    return out;
  };
}

/** Signatures over grid points: the sorted pieces of every parameter (canonical.ts). */
function signatures(phase: PhaseSpec, sources: Map<string, Source>): (digits: readonly number[]) => string {
  const sign = signer(phase.commandTemplate);
  const pieces = [...sources.keys()]
    .sort()
    .map((name) =>
      valueText(sources.get(name) as Source, (value) => signaturePiece(name, value), phase.axes),
    );
  return (digits) => {
    // A phase with no parameter at all signs "[[],template]".
    let joined = pieces.length === 0 ? "" : textAt(pieces[0] as ValueText, phase.axes, digits);
    for (let i = 1; i < pieces.length; i++)
      joined += `,${textAt(pieces[i] as ValueText, phase.axes, digits)}`;
    return sign(joined);
  };
}

export function compileGrid(
  phase: PhaseSpec,
  text: (value: ParamValue, name: string) => string,
): CompiledGrid {
  const { axes } = phase;
  const sources = parameterSources(phase);
  const keyOrder = [...sources.entries()];
  const dirText = renderer(phase.outputDirTemplate, (value, name) => text(value, name), sources, axes, {
    phase: phase.name,
  });
  const resolved = new Map<string, string>();
  return {
    params(digits) {
      // Filled key by key into a plain object: `{ ...defaults }` followed by stores of computed
      // keys took V8's slow path, 5 µs a task against 0.2 µs.
      const params: Params = {};
      for (const [name, source] of keyOrder)
        params[name] =
          "fixed" in source
            ? source.fixed
            : (axes[source.axis]?.values[digits[source.axis] as number] as ParamValue);
      return params;
    },
    signature: signatures(phase, sources),
    command: renderer(
      phase.commandTemplate,
      (value, name, context) => shellQuoteText(text(value, name), context),
      sources,
      axes,
    ),
    outputDir(digits) {
      const rendered = dirText(digits);
      let dir = resolved.get(rendered);
      if (dir === undefined) {
        dir = resolve(phase.baseDir, rendered);
        resolved.set(rendered, dir);
      }
      return dir;
    },
  };
}
