/** Where in which config file something went wrong. */
export interface SourcePlace {
  file: string;
  line: number;
  column: number;
}

/**
 * A config the user must fix. Callers branch on it to exit with code 2 and write nothing, so it
 * is a class; its message already names file:line:column and the key path.
 */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(
    readonly place: SourcePlace | null,
    readonly keyPath: string,
    readonly detail: string,
    options?: { cause?: unknown },
  ) {
    const where = place ? `${place.file}:${place.line}:${place.column}` : "";
    const key = keyPath ? `${keyPath}: ` : "";
    super(oneLine(`${where}${where ? ": " : ""}${key}${detail}`), options);
  }
}

/** Formats a key path like `exp1.combinations[0].seed`. */
export function formatKeyPath(path: ReadonlyArray<string | number>): string {
  let text = "";
  for (const part of path) {
    if (typeof part === "number") text += `[${part}]`;
    else text += text ? `.${part}` : part;
  }
  return text;
}

const ESCAPES: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it escapes
const CONTROL = /[\u0000-\u001f\u007f]/g;

/**
 * The message as one line of plain text: a key or value quoted in it may hold line breaks or
 * terminal escape sequences, which would split the error or repaint the user's terminal.
 */
function oneLine(text: string): string {
  return text.replace(
    CONTROL,
    (char) => ESCAPES[char] ?? `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
