/**
 * `--set [PHASE.]PARAM=VALUES`: the grammar of an override, parsed without knowing the sweep.
 * Which phases an override reaches is applyOverrides.ts's.
 *
 * VALUES is either a range — `range(N)`, `range(A,B)` or `range(A,B,STEP)`, integers with
 * Python's semantics — or a YAML flow sequence without its brackets: `0.1,0.01` is the list
 * `[0.1, 0.01]`, each item typed as in a config file (0.1 a number, true a boolean, "x" or x a
 * string). So a value that holds a comma is quoted, `name="a,b"`, and `[64,64]` is one value, a
 * list, as in Hydra (`layers=[64,64],[128]` sweeps two lists). One rule for every value: what
 * YAML reads inside `[…]` is what the grid gets, with the same spellings kept for templates.
 */
import { isMap, isScalar, isSeq, parseDocument, Scalar } from "yaml";
import { ConfigError } from "./configError.js";
import type { ParamValue } from "./types.js";
import { writtenSpelling } from "./yamlSource.js";

export interface Override {
  /** The flag's text as given, for error messages: `lr=0.1,0.01`. */
  arg: string;
  /** Left of the `=`: `lr` or `PHASE.lr`; which it is depends on the sweep's phase names. */
  target: string;
  /** At least one value, in the order given. */
  values: ParamValue[];
  /** JSON of a value → its spelling where that differs from its plain text (`1e-3`, `True`). */
  spellings: Record<string, string>;
}

/** The most values one range may give: more is a typo (the whole grid has the same cap without --yes). */
export const MAX_RANGE = 10_000_000;

/** A parameter name as a `{placeholder}` can name it (template.ts). */
export const PARAM_NAME = /^[A-Za-z_][\w.-]*$/;

const RANGE = /^range\((.*)\)$/s;
const INTEGER = /^[+-]?\d+$/;

const HINT =
  'values are YAML scalars separated by commas (0.1,0.01 or a,b); quote one that holds a comma or other YAML syntax: name="a,b"';

/** The error for one --set flag: no place in a file, the flag itself named first. */
export function overrideError(arg: string, detail: string): ConfigError {
  return new ConfigError(null, "", `--set ${arg}: ${detail}`);
}

/** Parses one `--set` flag; a malformed one is a ConfigError naming the flag (exit 2). */
export function parseOverride(arg: string): Override {
  const equals = arg.indexOf("=");
  if (equals < 0)
    throw overrideError(arg, "expected PARAM=VALUES or PHASE.PARAM=VALUES, e.g. --set lr=0.1,0.01");
  const target = arg.slice(0, equals).trim();
  const text = arg.slice(equals + 1);
  if (target === "") throw overrideError(arg, "no parameter name before the =");
  if (text.trim() === "") throw overrideError(arg, `no values after the =; ${HINT}`);
  const range = RANGE.exec(text.trim());
  if (range || text.trim().startsWith("range("))
    return { arg, target, values: rangeValues(arg, range?.[1]), spellings: {} };
  return { arg, target, ...flowValues(arg, text) };
}

/** `range(N)`, `range(A,B)`, `range(A,B,STEP)` as Python's range: integers, STEP not 0, B excluded. */
function rangeValues(arg: string, inner: string | undefined): number[] {
  const usage = "write range(N), range(A,B) or range(A,B,STEP) with integers, as in Python";
  if (inner === undefined) throw overrideError(arg, `malformed range: ${usage}; a range is the whole value`);
  const parts = inner.split(",").map((part) => part.trim());
  if (parts.length > 3 || parts.some((part) => !INTEGER.test(part)))
    throw overrideError(arg, `malformed range: ${usage}`);
  const numbers = parts.map(Number);
  if (numbers.some((n) => !Number.isSafeInteger(n))) throw overrideError(arg, "range bounds are too large");
  const [start, stop, step] =
    numbers.length === 1
      ? [0, numbers[0] as number, 1]
      : [numbers[0] as number, numbers[1] as number, numbers[2] ?? 1];
  if (step === 0) throw overrideError(arg, "range step must not be zero");
  const count = Math.max(0, Math.ceil((stop - start) / step));
  if (count === 0)
    throw overrideError(
      arg,
      `range(${parts.join(",")}) is empty (Python's range excludes its end): no values`,
    );
  if (count > MAX_RANGE)
    throw overrideError(arg, `range(${parts.join(",")}) has ${count} values, more than ${MAX_RANGE}`);
  return Array.from({ length: count }, (_, index) => start + index * step);
}

/** The right-hand side read as the items of a YAML flow sequence. */
function flowValues(arg: string, text: string): Pick<Override, "values" | "spellings"> {
  // YAML would fold a line break into a space: a value the user did not write.
  if (/[\r\n]/.test(text)) throw overrideError(arg, 'a line break in the values; write \\n inside "…"');
  const trimmed = text.trim();
  if (trimmed.startsWith(",") || trimmed.endsWith(","))
    throw overrideError(arg, `an empty value (a comma with nothing on one side); ${HINT}`);
  const doc = parseDocument(`[${text}]`, { uniqueKeys: true, prettyErrors: false });
  const first = doc.errors[0];
  if (first) {
    const why = first.message.split(" at line ")[0] ?? first.message;
    const comment = /\s#/.test(text) ? " (a # after a space starts a YAML comment)" : "";
    throw overrideError(arg, `not valid YAML values: ${why}${comment}; ${HINT}`);
  }
  const seq = doc.contents;
  if (!isSeq(seq)) throw overrideError(arg, HINT);
  const values: ParamValue[] = [];
  const spellings: Record<string, string> = {};
  for (const item of seq.items) {
    checkItem(arg, item, text);
    const value = (item as { toJSON(): unknown }).toJSON() as ParamValue;
    rejectNul(arg, value);
    const spelling = writtenSpelling(item);
    if (spelling !== undefined && spelling !== String(value)) spellings[JSON.stringify(value)] ??= spelling;
    values.push(value);
  }
  if (values.length === 0) throw overrideError(arg, `no values; ${HINT}`);
  return { values, spellings };
}

/** Refuses what YAML reads but the user hardly meant: aliases, `a: b` pairs, a range in a list. */
function checkItem(arg: string, item: unknown, text: string): void {
  if (isScalar(item)) {
    if (item.type === Scalar.PLAIN && typeof item.value === "string" && item.value.startsWith("range("))
      throw overrideError(arg, "range(…) must be the whole value, not one item of a list");
    return;
  }
  if (isMap(item)) {
    const start = (item.range?.[0] ?? 1) - 1;
    // `[a: b]` is YAML for a one-pair mapping; only a braced `{…}` is taken as a mapping value.
    if (text[start] !== "{")
      throw overrideError(arg, `": " makes a YAML key: value pair; quote the value: name="a: b"`);
    return;
  }
  if (isSeq(item)) return;
  throw overrideError(arg, `an alias (*name) or other YAML node is not a value; ${HINT}`);
}

/** A NUL cannot be in a process's arguments: a value holding one could never reach its command. */
function rejectNul(arg: string, value: ParamValue): void {
  const holds = (v: ParamValue): boolean =>
    typeof v === "string"
      ? v.includes("\0")
      : Array.isArray(v)
        ? v.some(holds)
        : v !== null && typeof v === "object"
          ? Object.entries(v).some(([key, inner]) => key.includes("\0") || holds(inner))
          : false;
  if (holds(value))
    throw overrideError(arg, "a value contains a NUL character, which no command argument can hold");
}
