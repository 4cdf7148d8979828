import type { Params, ParamValue } from "./types.js";

/**
 * `{name}` is a placeholder; `{{` and `}}` are literal braces; `${NAME}` is left alone for the
 * shell, so commands may use environment variables. Names may contain letters, digits, `_`, `-`
 * and `.`. Anything else in braces (e.g. awk's `{print $1}`) is literal text.
 */
const PLACEHOLDER = /\{\{|\}\}|\$\{[^}]*\}|\{([A-Za-z_][\w.-]*)\}/g;

/** The placeholder names a template uses, in order of first use. */
export function placeholderNames(template: string): string[] {
  const names = new Set<string>();
  for (const match of template.matchAll(PLACEHOLDER)) if (match[1]) names.add(match[1]);
  return [...names];
}

/** Renders a template; `quote` turns each value into its text (shell-quoted for commands). */
export function renderTemplate(
  template: string,
  values: Params,
  quote: (value: ParamValue) => string,
): string {
  return template.replace(PLACEHOLDER, (whole, name: string | undefined) => {
    if (whole === "{{") return "{";
    if (whole === "}}") return "}";
    if (!name) return whole;
    const value = values[name];
    if (value === undefined) throw new Error(`undefined placeholder {${name}}`);
    return quote(value);
  });
}

/** The plain text of a value: numbers and strings as written, anything structured as JSON. */
export function valueText(value: ParamValue): string {
  if (value === null) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

const SHELL_SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** Quotes a value for POSIX sh so that it always arrives as exactly one argument. */
export function shellQuote(value: ParamValue): string {
  const text = valueText(value);
  if (SHELL_SAFE.test(text)) return text;
  return `'${text.replaceAll("'", `'\\''`)}'`;
}
