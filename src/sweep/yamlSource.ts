import {
  type Document,
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  type Pair,
  parseDocument,
  visit,
  type YAMLError,
  type YAMLMap,
} from "yaml";
import { ConfigError, formatKeyPath, type SourcePlace } from "./configError.js";

/** A parsed YAML file that can say where any key path sits in its text. */
export interface YamlSource {
  file: string;
  data: unknown;
  /** The place of the value at `path`, or of its key when `at` is "key"; falls back to the nearest parent. */
  placeOf(path: ReadonlyArray<string | number>, at?: "key" | "value"): SourcePlace;
  error(path: ReadonlyArray<string | number>, detail: string, at?: "key" | "value"): ConfigError;
  /**
   * The place of the text `value.slice(offset, offset + length)` inside the string scalar at
   * `path`: found as the same occurrence of that text in the scalar's source, which holds for
   * plain, quoted and block scalars alike unless an escape sequence spells it differently; then
   * (and for a value that is not a string scalar) the scalar's start.
   */
  placeWithin(path: ReadonlyArray<string | number>, offset: number, length: number): SourcePlace;
  /**
   * How the number or boolean at `path` is spelt in the file (`0.0`, `1e-3`, `True`), when it is
   * a plain decimal number or a boolean; undefined for anything else.
   */
  writtenText(path: ReadonlyArray<string | number>): string | undefined;
}

/** A plain decimal number as Python would print it back: no hex, octal, `_` or `.inf`. */
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

export function parseYamlSource(file: string, text: string): YamlSource {
  const lines = new LineCounter();
  // `merge`: PyYAML, which read the original system's configs, understands `<<: *anchor`.
  const doc = parseDocument(text, {
    lineCounter: lines,
    prettyErrors: false,
    uniqueKeys: true,
    merge: true,
  });
  const placeAt = (offset: number): SourcePlace => {
    const pos = lines.linePos(offset);
    return { file, line: pos.line, column: pos.col };
  };
  const firstError = doc.errors[0];
  if (firstError) throw yamlError(text, doc, firstError, placeAt);
  const source: YamlSource = {
    file,
    data: toData(doc, placeAt),
    placeOf(path, at = "value") {
      return placeAt(locate(doc, path, at));
    },
    error(path, detail, at = "value") {
      return new ConfigError(source.placeOf(path, at), formatKeyPath(path), detail);
    },
    placeWithin(path, offset, length) {
      const node = nodeAt(doc, path);
      const start = locate(doc, path, "value");
      if (!isScalar(node) || typeof node.value !== "string" || !node.range) return placeAt(start);
      const needle = node.value.slice(offset, offset + length);
      if (needle.length === 0) return placeAt(start);
      const occurrence = occurrencesBefore(node.value, needle, offset);
      const raw = text.slice(node.range[0], node.range[1]);
      let at = -1;
      for (let n = 0; n <= occurrence; n++) {
        at = raw.indexOf(needle, at + 1);
        if (at < 0) return placeAt(start);
      }
      return placeAt(node.range[0] + at);
    },
    writtenText(path) {
      return writtenSpelling(nodeAt(doc, path));
    },
  };
  return source;
}

/** How a parsed number or boolean node is spelt (see YamlSource.writtenText); else undefined. */
export function writtenSpelling(node: unknown): string | undefined {
  if (!isScalar(node) || typeof node.source !== "string") return undefined;
  if (typeof node.value === "boolean") return node.source;
  if (typeof node.value === "number" && Number.isFinite(node.value) && DECIMAL.test(node.source))
    return node.source;
  return undefined;
}

/**
 * The document as plain data. Aliases are capped (a "billion laughs" file would otherwise
 * expand to gigabytes); a merge key that includes itself recurses without end, and one that
 * merges a scalar is refused by the parser here: all are the file's fault, so all are
 * ConfigErrors, placed at the first alias or merge key.
 */
function toData(doc: Document, placeAt: (offset: number) => SourcePlace): unknown {
  try {
    return doc.toJS({ maxAliasCount: 10_000 });
  } catch (error) {
    if (!(error instanceof Error)) throw error;
    let first = 0;
    visit(doc, {
      Alias(_key, node) {
        first = node.range?.[0] ?? 0;
        return visit.BREAK;
      },
      Pair(_key, pair) {
        const key = pair.key as Node | null;
        if (!isScalar(key) || key.source !== "<<") return undefined;
        first = key.range?.[0] ?? 0;
        return visit.BREAK;
      },
    });
    const why =
      error instanceof ReferenceError
        ? "its aliases expand to too much data (more than 10,000 alias uses; a resource-exhaustion pattern)"
        : error instanceof RangeError
          ? "an alias or merge key refers to itself, or the nesting is too deep"
          : (error.message.split("\n")[0] ?? error.message);
    throw new ConfigError(placeAt(first), "", `invalid YAML: ${why}`, { cause: error });
  }
}

/** How many times `needle` starts in `text` before `end`. */
function occurrencesBefore(text: string, needle: string, end: number): number {
  let count = 0;
  for (let at = text.indexOf(needle); at >= 0 && at < end; at = text.indexOf(needle, at + 1)) count++;
  return count;
}

/** A YAML syntax error, placed where the user has to look and, where known, with its key path. */
function yamlError(
  text: string,
  doc: Document,
  error: YAMLError,
  placeAt: (offset: number) => SourcePlace,
): ConfigError {
  const offset = error.pos[0];
  const detail = error.message.split("\n")[0] ?? error.message;
  if (error.code === "DUPLICATE_KEY") {
    const path = pathOfKeyAt(doc, offset);
    const key = path?.[path.length - 1];
    if (path && key !== undefined) {
      const first = placeAt(locate(doc, path, "key"));
      return new ConfigError(
        placeAt(offset),
        formatKeyPath(path),
        `invalid YAML: duplicate key "${key}" (first at line ${first.line}); each key may appear once in a mapping`,
      );
    }
  }
  const open = unclosedAt(text, offset);
  if (open && /end with a [\]}]|missing closing/i.test(detail)) {
    const until = placeAt(offset);
    const what =
      open.char === "["
        ? "[ is never closed with ]"
        : open.char === "{"
          ? "{ is never closed with }"
          : `${open.char} quote is never closed`;
    return new ConfigError(
      placeAt(open.offset),
      "",
      `invalid YAML: this ${what} (the YAML parser gave up at line ${until.line}: ${detail})`,
    );
  }
  // The parser recurses per level: thousands of nested [ or indents exhaust its stack.
  if (/maximum call stack/i.test(detail))
    return new ConfigError(
      placeAt(offset),
      "",
      "invalid YAML: the nesting is too deep (thousands of levels)",
    );
  return new ConfigError(placeAt(offset), "", `invalid YAML: ${detail}`);
}

/**
 * The innermost bracket or quote still open at `end`, found by a small scan that knows YAML's
 * quotes and comments; null when everything is closed.
 */
function unclosedAt(text: string, end: number): { char: string; offset: number } | null {
  const open: Array<{ char: string; offset: number }> = [];
  let quote: { char: string; offset: number } | null = null;
  for (let i = 0; i < end && i < text.length; i++) {
    const char = text[i] as string;
    if (quote) {
      if (quote.char === '"' && char === "\\") i++;
      else if (quote.char === "'" && char === "'" && text[i + 1] === "'") i++;
      else if (char === quote.char) quote = null;
      continue;
    }
    const previous = i === 0 ? "\n" : (text[i - 1] as string);
    if (char === "#" && /\s/.test(previous)) {
      while (i < end && text[i] !== "\n") i++;
    } else if ((char === '"' || char === "'") && /[\s[{,:-]/.test(previous)) {
      quote = { char, offset: i };
    } else if (char === "[" || char === "{") {
      open.push({ char, offset: i });
    } else if (char === "]" || char === "}") {
      open.pop();
    }
  }
  return quote ?? open[open.length - 1] ?? null;
}

/** The key path whose last key starts at `offset`, or null. */
function pathOfKeyAt(doc: Document, offset: number): Array<string | number> | null {
  const search = (node: unknown, path: Array<string | number>): Array<string | number> | null => {
    if (isMap(node)) {
      for (const item of node.items) {
        if (!isPair(item)) continue;
        const keyNode = item.key as Node | null;
        const key = keyText(item.key);
        if (keyNode?.range?.[0] === offset) return [...path, key];
        const found = search(item.value, [...path, key]);
        if (found) return found;
      }
    } else if (isSeq(node)) {
      for (const [index, item] of node.items.entries()) {
        const found = search(item, [...path, index]);
        if (found) return found;
      }
    }
    return null;
  };
  return search(doc.contents, []);
}

/** The node at `path`, or undefined when the path does not exist. */
function nodeAt(doc: Document, path: ReadonlyArray<string | number>): unknown {
  let node: unknown = doc.contents;
  for (const part of path) {
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = findPair(doc, node, String(part));
      if (!pair) return undefined;
      node = pair.value;
    } else if (isSeq(node) && typeof part === "number") {
      node = node.items[part];
    } else return undefined;
  }
  return isAlias(node) ? node.resolve(doc) : node;
}

/** Offset of the deepest node on `path` that exists. */
function locate(doc: Document, path: ReadonlyArray<string | number>, at: "key" | "value"): number {
  let node: unknown = doc.contents;
  let offset = (doc.contents as Node | null)?.range?.[0] ?? 0;
  for (const [depth, part] of path.entries()) {
    const last = depth === path.length - 1;
    // Through an alias to its anchor: that is where the text to fix is.
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = findPair(doc, node, String(part));
      if (!pair) break;
      const keyNode = pair.key as Node | null;
      const valueNode = pair.value as Node | null;
      if (last && at === "key" && keyNode?.range) return keyNode.range[0];
      offset = valueNode?.range?.[0] ?? keyNode?.range?.[0] ?? offset;
      node = valueNode;
    } else if (isSeq(node) && typeof part === "number") {
      const item = node.items[part] as Node | undefined;
      if (!item) break;
      offset = item.range?.[0] ?? offset;
      node = item;
    } else break;
  }
  return offset;
}

/** The pair for `key` in a map, looking through `<<: *anchor` merges as YAML does (own keys first). */
function findPair(doc: Document, map: YAMLMap, key: string, depth = 0): Pair | undefined {
  const own = map.items.find((item) => isPair(item) && keyText(item.key) === key);
  if (own || depth > 20) return own;
  for (const item of map.items) {
    if (!isPair(item) || keyText(item.key) !== "<<") continue;
    const value = item.value;
    const sources = isSeq(value) ? value.items : [value];
    for (const entry of sources) {
      const merged = isAlias(entry) ? entry.resolve(doc) : entry;
      if (!isMap(merged)) continue;
      const found = findPair(doc, merged, key, depth + 1);
      if (found) return found;
    }
  }
  return undefined;
}

function keyText(key: unknown): string {
  // A merge key `<<` is a scalar whose value is a marker, not its text.
  if (isScalar(key)) return key.source === "<<" ? "<<" : String(key.value);
  return String(key);
}
