// How config errors word what they found: shared by every check that writes one.

/** Ends a sentence after an optional hint: `"x"? ` after a question, `. ` otherwise. */
export function endSentence(hint: string): string {
  return hint.endsWith("?") ? `${hint} ` : `${hint}. `;
}

/** A short, one-line description of a YAML value for error messages. */
export function describeValue(value: unknown): string {
  if (value === null || value === undefined) return "nothing (null)";
  if (typeof value === "string") {
    const text = value.length > 40 ? `${value.slice(0, 40)}…` : value;
    return `the string ${JSON.stringify(text)}`;
  }
  if (typeof value === "number" || typeof value === "boolean") return `${typeof value} ${String(value)}`;
  if (Array.isArray(value)) return `a list of ${value.length}`;
  return "a mapping";
}
