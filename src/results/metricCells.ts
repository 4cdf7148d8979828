// A results row's metric cells read back: as values (cellValue, the rule the resume scan, verify
// and export share) and, for the ledger, as the JSON of those values, written straight from the
// cells.

/** A metric column of a results header: the metric it holds, its column name and index. */
export interface MetricColumn {
  name: string;
  column: string;
  index: number;
}

/** A CSV cell as a metric value: numbers as numbers, empty as null, anything else as text. */
export function cellValue(cell: string): unknown {
  if (cell === "") return null;
  const number = Number(cell);
  return Number.isFinite(number) && /^[+-]?(\d|\.\d)/.test(cell.trim()) ? number : cell;
}

/**
 * A row's metrics as an object and as JSON. The JSON is written straight from the cells when the
 * object's keys come out in column order, as they do unless a metric's name is an array index or
 * repeats; then it is the object's JSON.
 */
export function metricReaders(metricColumns: readonly MetricColumn[]): {
  metricsOf: (row: readonly string[]) => Record<string, unknown>;
  metricsJson: (row: readonly string[]) => string;
} {
  // fromEntries, not assignment: a metric named "__proto__" must stay a metric.
  const metricsOf = (row: readonly string[]): Record<string, unknown> =>
    Object.fromEntries(metricColumns.map((column) => [column.name, cellValue(row[column.index] ?? "")]));
  const names = metricColumns.map((column) => column.name);
  const keys = Object.keys(Object.fromEntries(names.map((name) => [name, null])));
  const inOrder = keys.length === names.length && keys.every((key, i) => key === names[i]);
  if (!inOrder || names.length === 0)
    return { metricsOf, metricsJson: (row: readonly string[]) => JSON.stringify(metricsOf(row)) };
  const indexes = metricColumns.map((column) => column.index);
  // Joined, not concatenated: one flat string a row, not a chain of pieces kept until it is sent.
  // parts: each metric's `{"name":` or `,"name":`, then its value; then "}".
  const parts = names.flatMap((name, i) => [`${i === 0 ? "{" : ","}${JSON.stringify(name)}:`, ""]);
  parts.push("}");
  const metricsJson = (row: readonly string[]): string => {
    for (let i = 0; i < indexes.length; i++) parts[2 * i + 1] = cellJson(row[indexes[i] as number] ?? "");
    return parts.join("");
  };
  return { metricsOf, metricsJson };
}

/** JSON.stringify(cellValue(cell)): a finite number's JSON is its String(). */
function cellJson(cell: string): string {
  if (isNumberAsJavaScriptWritesIt(cell)) return cell;
  const value = cellValue(cell);
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

/**
 * Whether String(Number(cell)) is `cell` itself, the usual metric cell (`0.8731`, `42`): then
 * the cell is its own JSON, and converting it there and back (most of the time of writing a row's
 * metrics as JSON) can be skipped. Checked by its form: an optional "-" (not before a lone 0),
 * an integer part without leading zeros, a fraction not ending in 0, at most 15 significant
 * digits (every such decimal is the shortest that reads back as its double), and no more than
 * five zeros after "0." (from 1e-7 down JavaScript writes an exponent). Anything else: false.
 */
function isNumberAsJavaScriptWritesIt(cell: string): boolean {
  const length = cell.length;
  let at = cell.charCodeAt(0) === MINUS ? 1 : 0;
  const first = cell.charCodeAt(at);
  if (first === ZERO) at++;
  else {
    if (!(first > ZERO && first <= NINE)) return false;
    while (at < length && isDigit(cell.charCodeAt(at))) at++;
  }
  let significant = first === ZERO ? 0 : at - (cell.charCodeAt(0) === MINUS ? 1 : 0);
  if (at === length) return significant <= 15 && !(first === ZERO && cell.charCodeAt(0) === MINUS);
  if (cell.charCodeAt(at) !== DOT || at + 1 === length || cell.charCodeAt(length - 1) === ZERO) return false;
  at++;
  if (significant === 0) {
    const start = at;
    while (at < length && cell.charCodeAt(at) === ZERO) at++;
    if (at - start > 5) return false;
  }
  const digits = at;
  while (at < length && isDigit(cell.charCodeAt(at))) at++;
  significant += at - digits;
  return at === length && significant <= 15;
}

const MINUS = 0x2d;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;

function isDigit(code: number): boolean {
  return code >= ZERO && code <= NINE;
}
