/**
 * A result file as Python's `json.dump` writes it by default: JSON, except that a float NaN or
 * infinity is the bare token `NaN`, `Infinity` or `-Infinity`, which JSON.parse refuses. Those
 * three, outside strings, are read as the strings "nan", "inf" and "-inf": what the Python
 * client (labsweep.result) stores for them, and what pandas reads back as floats.
 */
export function parseResultJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    const tolerant = quoteNonFinite(text);
    // Nothing to quote: the file's own error, with its own positions.
    if (tolerant === text) throw error;
    try {
      return JSON.parse(tolerant);
    } catch {
      throw error;
    }
  }
}

const TOKENS: ReadonlyArray<readonly [string, string]> = [
  ["-Infinity", '"-inf"'],
  ["Infinity", '"inf"'],
  ["NaN", '"nan"'],
];

/** The text with each bare NaN/Infinity/-Infinity outside a string quoted; strings as they are. */
function quoteNonFinite(text: string): string {
  let out = "";
  let index = 0;
  while (index < text.length) {
    const char = text[index] as string;
    if (char === '"') {
      const end = stringEnd(text, index);
      out += text.slice(index, end);
      index = end;
      continue;
    }
    const token = TOKENS.find(([bare]) => text.startsWith(bare, index));
    if (token) {
      out += token[1];
      index += token[0].length;
      continue;
    }
    out += char;
    index++;
  }
  return out;
}

/** Just past the string starting at `start` (a '"'): escapes skipped; the end if unclosed. */
function stringEnd(text: string, start: number): number {
  let index = start + 1;
  while (index < text.length) {
    const char = text[index];
    if (char === "\\") index += 2;
    else if (char === '"') return index + 1;
    else index++;
  }
  return text.length;
}
