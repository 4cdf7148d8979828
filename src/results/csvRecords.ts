import { readFile } from "node:fs/promises";
import { CsvFileError } from "./csvFileError.js";
import { parseCsvBytes } from "./csvRead.js";

// A results file's rows with where each stands in the file: its line (for messages a user can
// follow) and its bytes (so one row can be moved out without touching the others' quoting).

/** One data row: its cells as csvRead parses them, its first line, and its bytes [start, end). */
export interface CsvRecord {
  cells: string[];
  line: number;
  start: number;
  /** Just past the row's "\n" (or the end of the file). */
  end: number;
}

/** A last row cut short (csvRead leaves it out): where it starts, to the end of the file. */
export interface TornRecord {
  line: number;
  start: number;
  text: string;
}

export interface CsvRecords {
  bytes: Buffer;
  header: string[];
  rows: CsvRecord[];
  torn: TornRecord | null;
}

const QUOTE = 0x22;
const NEWLINE = 0x0a;
const RETURN = 0x0d;
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/** Reads a CSV file with each row's line and bytes; null when there is no file. */
export async function readCsvRecords(path: string): Promise<CsvRecords | null> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new CsvFileError(`cannot read CSV file ${path}`, { cause: error });
  }
  let parsed: ReturnType<typeof parseCsvBytes>;
  try {
    parsed = parseCsvBytes(bytes);
  } catch (error) {
    throw new CsvFileError(`malformed CSV file ${path}`, { cause: error });
  }
  const spans = recordSpans(bytes);
  // The parser and the spans must agree row for row, or a line number would name the wrong row.
  const expected = (parsed.header.length > 0 ? 1 : 0) + parsed.rows.length + (parsed.tornTail ? 1 : 0);
  if (spans.length !== expected)
    throw new CsvFileError(`malformed CSV file ${path}: cannot tell where its rows begin and end`);
  const rows = parsed.rows.map((cells, index) => ({ cells, ...(spans[index + 1] as Span) }));
  const tornSpan = parsed.tornTail ? (spans.at(-1) as Span) : null;
  const torn = tornSpan
    ? { line: tornSpan.line, start: tornSpan.start, text: bytes.subarray(tornSpan.start).toString("utf8") }
    : null;
  return { bytes, header: parsed.header, rows, torn };
}

interface Span {
  line: number;
  start: number;
  end: number;
}

/**
 * Where each record of a CSV file lies: a record ends at a "\n" outside quotes (a doubled quote
 * inside a quoted cell flips the state twice), blank lines are none, as csvRead skips them.
 */
function recordSpans(bytes: Buffer): Span[] {
  const spans: Span[] = [];
  let inQuotes = false;
  let line = 1;
  let start = bytes.subarray(0, 3).equals(BOM) ? 3 : 0;
  let startLine = 1;
  const close = (end: number, contentEnd: number): void => {
    const last = contentEnd > start && bytes[contentEnd - 1] === RETURN ? contentEnd - 1 : contentEnd;
    if (last > start) spans.push({ line: startLine, start, end });
  };
  for (let index = start; index < bytes.length; index++) {
    const byte = bytes[index];
    if (byte === QUOTE) inQuotes = !inQuotes;
    else if (byte === NEWLINE) {
      line++;
      if (inQuotes) continue;
      close(index + 1, index);
      start = index + 1;
      startLine = line;
    }
  }
  // A last record without its "\n": its "\r" is content, as csvRead reads it.
  if (start < bytes.length) spans.push({ line: startLine, start, end: bytes.length });
  return spans;
}
