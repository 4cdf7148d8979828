import type { Params, ParamValue } from "./types.js";

/**
 * `{name}` is a placeholder; `{{` and `}}` are literal braces; `${NAME}` is left alone for the
 * shell, so commands may use environment variables. Names may contain letters, digits, `_`, `-`
 * and `.`. Anything else in braces (e.g. awk's `{print $1}`) is literal text.
 */
const PLACEHOLDER = /\{\{|\}\}|\$\{[^}]*\}|\{([A-Za-z_][\w.-]*)\}/g;

/** A Python-style format spec or conversion (`{lr:.3f}`, `{name!r}`), which labsweep does not support. */
const FORMAT_SPEC = /\{\{|\}\}|\$\{[^}]*\}|\{([A-Za-z_][\w.-]*)[:!][^{}]*\}/g;

/** Where a placeholder sits in a shell command: outside quotes, inside '…' or inside "…". */
export type QuoteContext = "none" | "single" | "double";

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

/** A template split once into literal text and placeholders with their quote context. */
export type TemplatePart = string | { name: string; context: QuoteContext };

const compiledTemplates = new Map<string, TemplatePart[]>();

/** Splits a template (memoised: a million-task grid renders the same few templates). */
export function compileTemplate(template: string): TemplatePart[] {
  const cached = compiledTemplates.get(template);
  if (cached) return cached;
  const parts: TemplatePart[] = [];
  let last = 0;
  let state: ShellState = { context: "none", escaped: false, comment: false, wordStart: true };
  for (const match of template.matchAll(PLACEHOLDER)) {
    const literal = template.slice(last, match.index);
    state = scanShell(literal, state);
    parts.push(literal);
    last = match.index + match[0].length;
    const whole = match[0];
    const name = match[1];
    if (whole === "{{") parts.push("{");
    else if (whole === "}}") parts.push("}");
    else if (!name) parts.push(whole);
    else parts.push({ name, context: state.comment ? "none" : state.context });
    state = { ...state, escaped: false, wordStart: false };
  }
  parts.push(template.slice(last));
  if (compiledTemplates.size > 1000) compiledTemplates.clear();
  compiledTemplates.set(template, parts);
  return parts;
}

interface ShellState {
  context: QuoteContext;
  /** The previous character was an unquoted or double-quoted backslash. */
  escaped: boolean;
  /** Inside a `# comment` (until the end of the line). */
  comment: boolean;
  /** The next character starts a word (so `#` would start a comment). */
  wordStart: boolean;
}

/** Advances a minimal POSIX sh quote tracker over literal template text. */
function scanShell(text: string, start: ShellState): ShellState {
  let { context, escaped, comment, wordStart } = start;
  for (const char of text) {
    if (comment) {
      if (char === "\n") {
        comment = false;
        wordStart = true;
      }
      continue;
    }
    if (escaped) {
      escaped = false;
      wordStart = false;
      continue;
    }
    if (context === "single") {
      if (char === "'") context = "none";
      continue;
    }
    if (context === "double") {
      if (char === "\\") escaped = true;
      else if (char === '"') context = "none";
      continue;
    }
    if (char === "\\") escaped = true;
    else if (char === "'") context = "single";
    else if (char === '"') context = "double";
    else if (char === "#" && wordStart) comment = true;
    wordStart = /[\s;&|()<>]/.test(char);
  }
  return { context, escaped, comment, wordStart };
}

/**
 * The quote a command template leaves open (`'` or `"`) and its offset, or null when every quote
 * is closed; placeholders and `${…}` count as closed words.
 */
export function unclosedQuote(template: string): { quote: "'" | '"'; offset: number } | null {
  let state: ShellState = { context: "none", escaped: false, comment: false, wordStart: true };
  let opened = -1;
  let last = 0;
  const track = (text: string, base: number): void => {
    for (let i = 0; i < text.length; i++) {
      const before = state.context;
      state = scanShell(text[i] as string, state);
      if (before === "none" && state.context !== "none") opened = base + i;
    }
  };
  for (const match of template.matchAll(PLACEHOLDER)) {
    track(template.slice(last, match.index), last);
    last = match.index + match[0].length;
    state = { ...state, escaped: false, wordStart: false };
  }
  track(template.slice(last), last);
  if (state.context === "none") return null;
  return { quote: state.context === "single" ? "'" : '"', offset: opened };
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

/**
 * Quotes a text for POSIX sh so that it arrives intact as exactly one argument (or as exactly its
 * part of one): outside quotes it is wrapped in '…'; inside a template's own "…" the characters
 * special there are backslash-escaped; inside a template's own '…' each ' closes, escapes and
 * reopens the quote.
 */
export function shellQuoteText(text: string, context: QuoteContext = "none"): string {
  if (context === "double") return text.replace(/[\\"$`]/g, "\\$&");
  if (context === "single") return text.replaceAll("'", `'\\''`);
  if (SHELL_SAFE.test(text)) return text;
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/** Quotes a value for POSIX sh so that it always arrives as exactly one argument. */
export function shellQuote(value: ParamValue, context: QuoteContext = "none"): string {
  return shellQuoteText(valueText(value), context);
}
