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

/** Text per axis value (filled on first use), or one fixed text. */
type Texts = { axis: number; texts: Array<string | undefined> } | { fixed: string };

export function compileGrid(
  phase: PhaseSpec,
  text: (value: ParamValue, name: string) => string,
): CompiledGrid {
  const { axes, defaults } = phase;
  const sources = new Map<string, Source>();
  for (const [name, value] of Object.entries(defaults)) sources.set(name, { fixed: value as ParamValue });
  // A later axis of the same name wins, as when params are layered in order.
  for (const [index, axis] of axes.entries()) sources.set(axis.name, { axis: index });
  // The keys in the order layering gives them: the defaults', then each new axis name's.
  const keyOrder = [...sources.entries()];
  const perValue = (source: Source, describe: (value: ParamValue) => string): Texts =>
    "fixed" in source
      ? { fixed: describe(source.fixed) }
      : { axis: source.axis, texts: new Array(axes[source.axis]?.values.length ?? 0) };
  const textAt = (
    entry: Texts,
    describe: (value: ParamValue) => string,
    digits: readonly number[],
  ): string => {
    if ("fixed" in entry) return entry.fixed;
    const digit = digits[entry.axis] as number;
    let found = entry.texts[digit];
    if (found === undefined) {
      found = describe(axes[entry.axis]?.values[digit] as ParamValue);
      entry.texts[digit] = found;
    }
    return found;
  };

  // Signature: the sorted pieces of every parameter (taskSignature's text, canonical.ts).
  const sign = signer(phase.commandTemplate);
  const pieces = [...sources.keys()].sort().map((name) => {
    const describe = (value: ParamValue) => signaturePiece(name, value);
    return { entry: perValue(sources.get(name) as Source, describe), describe };
  });

  const renderer = (
    template: string,
    quote: (value: ParamValue, name: string, context: QuoteContext) => string,
    fixed: Params,
  ) => {
    const parts = compileTemplate(template).map((part: TemplatePart) => {
      if (typeof part === "string") return { entry: { fixed: part } as Texts, describe: String };
      const source: Source | undefined =
        sources.get(part.name) ??
        (part.name in fixed ? { fixed: fixed[part.name] as ParamValue } : undefined);
      if (source === undefined) throw new Error(`undefined placeholder {${part.name}}`);
      const describe = (value: ParamValue) => quote(value, part.name, part.context);
      return { entry: perValue(source, describe), describe };
    });
    return (digits: readonly number[]): string => {
      let out = "";
      for (const part of parts) out += textAt(part.entry, part.describe, digits);
      return out;
    };
  };
  const command = renderer(
    phase.commandTemplate,
    (value, name, context) => shellQuoteText(text(value, name), context),
    {},
  );
  const dirText = renderer(phase.outputDirTemplate, (value, name) => text(value, name), {
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
    signature(digits) {
      let joined = "";
      for (let i = 0; i < pieces.length; i++) {
        const piece = pieces[i] as (typeof pieces)[number];
        joined +=
          i === 0
            ? textAt(piece.entry, piece.describe, digits)
            : `,${textAt(piece.entry, piece.describe, digits)}`;
      }
      return sign(joined);
    },
    command,
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
