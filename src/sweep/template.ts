import { MARK, type QuoteContext, scanShell } from "./shellLexer.js";
import type { Params, ParamValue } from "./types.js";

/**
 * `{name}` is a placeholder; `{{` and `}}` are literal braces; `${NAME}` is left alone for the
 * shell, so commands may use environment variables. Names may contain letters, digits, `_`, `-`
 * and `.`. Anything else in braces (e.g. awk's `{print $1}`) is literal text.
 */
const PLACEHOLDER = /\{\{|\}\}|\$\{[^}]*\}|\{([A-Za-z_][\w.-]*)\}/g;

/** A Python-style format spec or conversion (`{lr:.3f}`, `{name!r}`), which labsweep does not support. */
const FORMAT_SPEC = /\{\{|\}\}|\$\{[^}]*\}|\{([A-Za-z_][\w.-]*)[:!][^{}]*\}/g;

export type { QuoteContext };

/** The placeholder names a template uses, in order of first use. */
export function placeholderNames(template: string): string[] {
  const names = new Set<string>();
  for (const match of template.matchAll(PLACEHOLDER)) if (match[1]) names.add(match[1]);
  return [...names];
}

/** The first `{name:spec}` or `{name!conv}` whose name is in `known`, e.g. "{lr:.3f}", or null. */
export function formatSpecUse(
  template: string,
  known: ReadonlySet<string>,
): { text: string; name: string } | null {
  for (const match of template.matchAll(FORMAT_SPEC)) {
    if (match[1] && known.has(match[1])) return { text: match[0], name: match[1] };
  }
  return null;
}

/**
 * Renders a template; `quote` turns each value into its text (shell-quoted for commands). It is
 * told the placeholder's name and, for shell commands, whether the placeholder sits inside quotes.
 */
export function renderTemplate(
  template: string,
  values: Params,
  quote: (value: ParamValue, name: string, context: QuoteContext) => string,
): string {
  let out = "";
  for (const part of compileTemplate(template)) {
    if (typeof part === "string") out += part;
    else {
      const value = values[part.name];
      if (value === undefined) throw new Error(`undefined placeholder {${part.name}}`);
      out += quote(value, part.name, part.context);
    }
  }
  return out;
}

/**
 * A template split once into literal text and placeholders. A placeholder carries how the
 * shell reads the text there (see shellLexer.ts) — its quote context, or why no quoting is safe
 * there — and its offset in the template, for error messages.
 */
export type TemplatePart = string | { name: string; context: QuoteContext; offset: number; problem?: string };

interface Compiled {
  parts: TemplatePart[];
  unclosed: { opener: string; offset: number } | null;
  nul: number;
}

const compiledTemplates = new Map<string, Compiled>();

/** Splits a template (memoised: a million-task grid renders the same few templates). */
export function compileTemplate(template: string): TemplatePart[] {
  return compiled(template).parts;
}

function compiled(template: string): Compiled {
  const cached = compiledTemplates.get(template);
  if (cached) return cached;
  const parts: TemplatePart[] = [];
  const placeholders: Array<{ name: string; context: QuoteContext; offset: number; problem?: string }> = [];
  // The text the shell will see, a MARK standing for each placeholder, and where each of its
  // characters came from in the template.
  let shellText = "";
  const origin: number[] = [];
  const literal = (text: string, offset: number, single = false): void => {
    parts.push(text);
    for (let i = 0; i < text.length; i++) origin.push(single ? offset : offset + i);
    shellText += text.replaceAll(MARK, " ");
  };
  let last = 0;
  for (const match of template.matchAll(PLACEHOLDER)) {
    literal(template.slice(last, match.index), last);
    last = match.index + match[0].length;
    const whole = match[0];
    const name = match[1];
    if (whole === "{{") literal("{", match.index, true);
    else if (whole === "}}") literal("}", match.index, true);
    else if (!name) literal(whole, match.index);
    else {
      const placeholder = { name, context: "none" as QuoteContext, offset: match.index };
      placeholders.push(placeholder);
      parts.push(placeholder);
      origin.push(match.index);
      shellText += MARK;
    }
  }
  literal(template.slice(last), last);
  const scan = scanShell(shellText);
  for (const [index, placeholder] of placeholders.entries()) {
    const verdict = scan.verdicts[index];
    if (verdict === undefined) placeholder.problem = "where labsweep lost track of the shell's quoting";
    else if ("problem" in verdict) placeholder.problem = verdict.problem;
    else placeholder.context = verdict.context;
  }
  const entry: Compiled = {
    parts,
    unclosed: scan.unclosed
      ? { opener: scan.unclosed.opener, offset: origin[scan.unclosed.index] ?? 0 }
      : null,
    nul: template.indexOf(MARK),
  };
  if (compiledTemplates.size > 1000) compiledTemplates.clear();
  compiledTemplates.set(template, entry);
  return entry;
}

/** Why a command template cannot be run safely, at which offset and for which placeholder; null when it can. */
export function commandTemplateProblem(
  template: string,
): { offset: number; length: number; name: string | null; detail: string } | null {
  const { parts, nul } = compiled(template);
  if (nul >= 0) return { offset: nul, length: 1, name: null, detail: "the command contains a NUL character" };
  for (const part of parts) {
    if (typeof part === "string" || part.problem === undefined) continue;
    return {
      offset: part.offset,
      length: part.name.length + 2,
      name: part.name,
      detail: `placeholder {${part.name}} is ${part.problem}: no quoting keeps its value from changing the command there`,
    };
  }
  // `${VAR:-{x}}`: `${…}` is the shell's and ends at the first `}` — {x}'s own — so {x} would stay
  // literal text, never its value, and every task would run the same command without a word.
  for (const match of template.matchAll(PLACEHOLDER)) {
    const nested = match[0].startsWith("${") ? NESTED_PLACEHOLDER.exec(match[0].slice(2)) : null;
    if (!nested?.[1]) continue;
    return {
      offset: match.index + 2 + nested.index,
      length: nested[0].length,
      name: nested[1],
      detail: `placeholder {${nested[1]}} is inside \${…}, which is the shell's: it would stay literal text, never its value`,
    };
  }
  return null;
}

/** A placeholder closing a `${…}` match: `{x}` of `${A:-{x}}`. */
const NESTED_PLACEHOLDER = /\{([A-Za-z_][\w.-]*)\}$/;

/**
 * The quote or substitution a command template leaves open (`'`, `"`, `$(`, …) and its offset,
 * or null when everything is closed.
 */
export function unclosedQuote(template: string): { quote: string; offset: number } | null {
  const { unclosed } = compiled(template);
  return unclosed ? { quote: unclosed.opener, offset: unclosed.offset } : null;
}

/** The plain text of a value: numbers and strings as written, anything structured as JSON. */
export function valueText(value: ParamValue): string {
  if (value === null) return "";
  if (typeof value === "number" && !Number.isFinite(value))
    return Number.isNaN(value) ? "nan" : value > 0 ? "inf" : "-inf";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

const SHELL_SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;
/** `NAME=…`: unquoted at a command's start the shell would read it as an assignment. */
const ASSIGNMENT = /^[A-Za-z_][A-Za-z0-9_]*=/;

/**
 * Quotes a text for POSIX sh so that it arrives intact as exactly one argument (or as exactly its
 * part of one): outside quotes it is wrapped in '…'; inside a template's own "…" the characters
 * special there are backslash-escaped; inside a template's own '…' each ' closes, escapes and
 * reopens the quote.
 */
export function shellQuoteText(text: string, context: QuoteContext = "none"): string {
  if (context === "double") return text.replace(/[\\"$`]/g, "\\$&");
  if (context === "single") return text.replaceAll("'", `'\\''`);
  if (SHELL_SAFE.test(text) && !ASSIGNMENT.test(text)) return text;
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/** Quotes a value for POSIX sh so that it always arrives as exactly one argument. */
export function shellQuote(value: ParamValue, context: QuoteContext = "none"): string {
  return shellQuoteText(valueText(value), context);
}
