import { type Document, isMap, isPair, isScalar, isSeq, LineCounter, type Node, parseDocument } from "yaml";
import { ConfigError, formatKeyPath, type SourcePlace } from "./configError.js";

/** A parsed YAML file that can say where any key path sits in its text. */
export interface YamlSource {
  file: string;
  data: unknown;
  /** The place of the value at `path`, or of its key when `at` is "key"; falls back to the nearest parent. */
  placeOf(path: ReadonlyArray<string | number>, at?: "key" | "value"): SourcePlace;
  error(path: ReadonlyArray<string | number>, detail: string, at?: "key" | "value"): ConfigError;
}

export function parseYamlSource(file: string, text: string): YamlSource {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const firstError = doc.errors[0];
  if (firstError) {
    const pos = lines.linePos(firstError.pos[0]);
    const detail = firstError.message.split("\n")[0] ?? firstError.message;
    throw new ConfigError({ file, line: pos.line, column: pos.col }, "", `invalid YAML: ${detail}`);
  }
  const placeAt = (offset: number): SourcePlace => {
    const pos = lines.linePos(offset);
    return { file, line: pos.line, column: pos.col };
  };
  const source: YamlSource = {
    file,
    data: doc.toJS({ maxAliasCount: 10_000 }),
    placeOf(path, at = "value") {
      return placeAt(locate(doc, path, at));
    },
    error(path, detail, at = "value") {
      return new ConfigError(source.placeOf(path, at), formatKeyPath(path), detail);
    },
  };
  return source;
}

/** Offset of the deepest node on `path` that exists. */
function locate(doc: Document, path: ReadonlyArray<string | number>, at: "key" | "value"): number {
  let node: unknown = doc.contents;
  let offset = (doc.contents as Node | null)?.range?.[0] ?? 0;
  for (const [depth, part] of path.entries()) {
    const last = depth === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((item) => isPair(item) && keyText(item.key) === String(part));
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

function keyText(key: unknown): string {
  return isScalar(key) ? String(key.value) : String(key);
}
