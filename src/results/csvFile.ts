import { randomBytes } from "node:crypto";
import { type BigIntStats, constants } from "node:fs";
import { rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { stringify } from "csv-stringify/sync";
import { CsvFileError } from "./csvFileError.js";
import { readParsedCsv } from "./csvRead.js";
import { createDirectoryDurably, syncDirectory, writeAndSync } from "./durableWrite.js";

// What importers of results files use, kept here so they need one module.
export { CsvFileError, errorText } from "./csvFileError.js";
export { type CsvContent, readCsvFile } from "./csvRead.js";

/**
 * Durable CSV results files (`final_results.csv`).
 *
 * Guarantees, including after kill -9 at any moment:
 * - a reader (pandas, this module) always sees a parseable file: whole-file changes go through
 *   temp file + rename, and appends are one `write` of whole, newline-terminated rows;
 * - a row cut short by a crash mid-append is recognised on read (`tornTail`: a last row without
 *   its final newline, whatever its cells) and dropped by the next append, which rewrites the
 *   file atomically without it.
 * Each append looks at the file and then writes it, so appends to one file must not overlap: this
 * module queues them within a process; separate processes must not append to one file at once.
 * An append costs O(rows appended), not O(file): see `knownFiles` for how it avoids re-reading.
 */

/** Per absolute path, a promise that settles when the last queued append to it is done. */
const appendQueues = new Map<string, Promise<void>>();

/** What identifies one state of a file: any write, rename or deletion changes at least one field. */
interface FileIdentity {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

/** What an append needs to know about a file, as this process's own last write left it. */
interface KnownFile {
  header: string[];
  endsWithNewline: boolean;
  identity: FileIdentity;
}

/**
 * Per absolute path, the file as our last successful write left it: header, ending, and identity
 * (fstat of our handle right after the write and fsync).
 *
 * Why: learning the header and the state of the tail by reading costs O(file) per append, O(n²)
 * over a sweep. Reading only the first and last 64 KiB does not work in general: a quoted cell may
 * contain newlines, so a window starting mid-file cannot be split into records reliably, and
 * whether the last row is torn depends on the quote state, i.e. on everything before it.
 *
 * How: an append `stat`s the file. If device, inode, size, mtime and ctime (ns) all equal the
 * recorded identity, nobody has written, replaced or deleted the file since our write, so the
 * recorded header still holds and the file still ends on a whole row (`tornTail` is false): the
 * rows are appended without reading anything. Whenever they differ - first append in this process,
 * rows or a new header from another tool, a torn tail from a killed process (whose own cache died
 * with it), a replaced or deleted file - the append falls back to the full read and its rules.
 * ctime cannot be set from user space, so restoring mtime (touch -d, rsync -t) does not hide a
 * change; the one blind spot is an in-place rewrite to exactly the same size within the same
 * filesystem timestamp tick (a few ms on kernels with coarse timestamps) as our write.
 *
 * An entry is removed before each of our writes and set again only after it succeeded, so a
 * failed or partial write never leaves a stale entry. Only writes by this module set entries;
 * `readCsvFile` neither uses nor sets them.
 */
const knownFiles = new Map<string, KnownFile>();

/**
 * Replaces `path` with a file holding `header` and `rows`, so that readers see either the old
 * file or the new one, never a mix. Every row must have the header's length.
 */
export async function writeCsvAtomically(path: string, header: string[], rows: string[][]): Promise<void> {
  assertRowWidths(path, header, rows);
  const directory = dirname(path);
  await createDirectoryDurably(directory);
  const tempPath = join(directory, `.${basename(path)}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`);
  knownFiles.delete(resolve(path));
  let renamed = false;
  let written: BigIntStats | null;
  try {
    written = await writeAndSync(tempPath, "wx", Buffer.from(stringifyCsv(header, rows)));
    await rename(tempPath, path);
    renamed = true;
    // The rename itself only survives a power loss once the directory entry is on disk.
    await syncDirectory(directory);
  } catch (error) {
    throw new CsvFileError(`cannot write CSV file ${path}`, { cause: error });
  } finally {
    if (!renamed) await rm(tempPath, { force: true });
  }
  if (written !== null) await rememberRenamedFile(path, header, written);
}

/**
 * Records the file that `writeCsvAtomically` just renamed into place. The rename changed its
 * ctime, so the identity comes from a fresh `stat`, trusted only if it still shows the very file
 * we wrote (same inode, size and mtime as our handle saw): otherwise nothing is recorded.
 */
async function rememberRenamedFile(path: string, header: string[], written: BigIntStats): Promise<void> {
  let current: BigIntStats;
  try {
    current = await stat(path, { bigint: true });
  } catch {
    return;
  }
  const same =
    current.dev === written.dev &&
    current.ino === written.ino &&
    current.size === written.size &&
    current.mtimeNs === written.mtimeNs;
  if (same) remember(path, header, current);
}

/** Our write left `path` ending on a whole row with `header`; `stats` is its state right after. */
function remember(path: string, header: string[], stats: BigIntStats): void {
  knownFiles.set(resolve(path), { header: [...header], endsWithNewline: true, identity: identityOf(stats) });
}

function identityOf(stats: BigIntStats): FileIdentity {
  const { dev, ino, size, mtimeNs, ctimeNs } = stats;
  return { dev, ino, size, mtimeNs, ctimeNs };
}

/** The recorded state of `path` if the file is still exactly as our last write left it, else null. */
async function unchangedKnownFile(path: string): Promise<KnownFile | null> {
  const key = resolve(path);
  const known = knownFiles.get(key);
  if (known === undefined) return null;
  let current: FileIdentity;
  try {
    current = identityOf(await stat(path, { bigint: true }));
  } catch {
    // Gone or unreadable: the full read tells which, and reports real errors.
    knownFiles.delete(key);
    return null;
  }
  const { identity } = known;
  const unchanged =
    current.dev === identity.dev &&
    current.ino === identity.ino &&
    current.size === identity.size &&
    current.mtimeNs === identity.mtimeNs &&
    current.ctimeNs === identity.ctimeNs;
  if (unchanged) return known;
  knownFiles.delete(key);
  return null;
}

/**
 * Appends rows (each of `header`'s length) and returns the header now in the file.
 * - missing file: created atomically with `header` and `rows`;
 * - the file already has every column of `header` and no torn tail: one `write` of the rows,
 *   reordered to the file's columns ("" for columns `header` lacks), then fsync;
 * - otherwise (new columns, or a torn tail to drop): one atomic rewrite whose header is the file's
 *   header followed by the new columns, so existing column positions never change.
 * Appending no rows leaves an existing file untouched.
 */
export async function appendCsvRows(
  path: string,
  header: string[],
  rows: string[][],
): Promise<{ header: string[] }> {
  assertUsableHeader(path, header);
  assertRowWidths(path, header, rows);
  return await oneAppendAtATime(path, () => appendValidatedRows(path, header, rows));
}

async function appendValidatedRows(
  path: string,
  header: string[],
  rows: string[][],
): Promise<{ header: string[] }> {
  // Fast path, no read: the file is as our last write left it (see `knownFiles`).
  const known = await unchangedKnownFile(path);
  if (known !== null) {
    if (rows.length === 0) return { header: [...known.header] };
    const mergedHeader = mergeHeaders(known.header, header);
    if (mergedHeader.length === known.header.length) {
      const newRows = rows.map((row) => reorderRow(row, header, mergedHeader));
      await appendInOneWrite(path, known.header, newRows, known.endsWithNewline);
      return { header: mergedHeader };
    }
    // New columns: the rewrite below needs every row, so it reads them anyway.
  }
  // First append from this process, a file changed behind our back, or new columns: full read.
  const existing = await readParsedCsv(path);
  if (existing === null) {
    await writeCsvAtomically(path, header, rows);
    return { header };
  }
  if (rows.length === 0) return { header: existing.header };
  const mergedHeader = mergeHeaders(existing.header, header);
  const newRows = rows.map((row) => reorderRow(row, header, mergedHeader));
  if (existing.tornTail || mergedHeader.length > existing.header.length) {
    const oldRows = existing.rows.map((row, index) =>
      padRow(path, row, index, existing.header, mergedHeader),
    );
    await writeCsvAtomically(path, mergedHeader, [...oldRows, ...newRows]);
  } else {
    await appendInOneWrite(path, existing.header, newRows, existing.endsWithNewline);
  }
  return { header: mergedHeader };
}

/**
 * Runs `append` after every earlier append to the same file from this process has finished:
 * two interleaved read-then-write appends would lose rows (both create, or both rewrite).
 */
async function oneAppendAtATime<T>(path: string, append: () => Promise<T>): Promise<T> {
  const key = resolve(path);
  const result = (appendQueues.get(key) ?? Promise.resolve()).then(append);
  // The queue only waits for completion; the outcome, error included, goes to this caller.
  const done = result.then(
    () => undefined,
    () => undefined,
  );
  appendQueues.set(key, done);
  try {
    return await result;
  } finally {
    if (appendQueues.get(key) === done) appendQueues.delete(key);
  }
}

/** Text of one cell: "" for null/undefined, numbers as JS prints them, objects as JSON. */
export function formatCell(value: unknown): string {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") return value;
  // String(-0) is already "0", and integral numbers print without a fraction.
  if (typeof value === "number" || typeof value === "bigint" || typeof value === "boolean") {
    return String(value);
  }
  // JSON.stringify would wrap a date in quotes; an invalid date's toJSON() is null.
  if (value instanceof Date) return value.toJSON() ?? "";
  if (typeof value === "object") return JSON.stringify(value) ?? "";
  return String(value);
}

function stringifyCsv(header: string[], rows: string[][]): string {
  return stringify([header, ...rows], {
    record_delimiter: "\n",
    // With one column an empty cell would be a blank line, which readers skip.
    quoted_empty: header.length === 1,
  });
}

/**
 * One `write` on an O_APPEND handle puts the rows at the current end in one piece, so no other
 * append can land between them; the rows end with "\n", so the file ends on a row boundary again.
 * The handle is opened without O_CREAT: a file deleted since we looked at it must not come back
 * as rows without a header.
 */
async function appendInOneWrite(
  path: string,
  fileHeader: string[],
  rows: string[][],
  endsWithNewline: boolean,
): Promise<void> {
  // A complete last row without a final newline (another tool's file) must not be glued to ours.
  const separator = endsWithNewline ? "" : "\n";
  const text = separator + stringify(rows, { record_delimiter: "\n", quoted_empty: rows[0]?.length === 1 });
  knownFiles.delete(resolve(path));
  let written: BigIntStats | null;
  try {
    written = await writeAndSync(path, constants.O_WRONLY | constants.O_APPEND, Buffer.from(text));
  } catch (error) {
    throw new CsvFileError(`cannot append to CSV file ${path}`, { cause: error });
  }
  if (written !== null) remember(path, fileHeader, written);
}

/** The file's columns first, in their order, then the columns only `wanted` has. */
function mergeHeaders(existing: string[], wanted: string[]): string[] {
  const known = new Set(existing);
  return [...existing, ...wanted.filter((column) => !known.has(column))];
}

function reorderRow(row: string[], from: string[], to: string[]): string[] {
  const cellByColumn = new Map(from.map((column, index) => [column, row[index] ?? ""]));
  return to.map((column) => cellByColumn.get(column) ?? "");
}

/**
 * Widens an existing row to the merged header. A row longer than its header (which pandas
 * rejects anyway) is refused rather than cut: if columns were added, its extra cells would
 * silently land under them.
 */
function padRow(path: string, row: string[], index: number, oldHeader: string[], newHeader: string[]) {
  if (row.length > oldHeader.length) {
    throw new CsvFileError(
      `cannot rewrite CSV file ${path}: data row ${index + 1} has ${row.length} fields but the header has ${oldHeader.length}`,
    );
  }
  return [...row, ...Array<string>(newHeader.length - row.length).fill("")];
}

function assertUsableHeader(path: string, header: string[]): void {
  if (header.length === 0) throw new CsvFileError(`cannot append to CSV file ${path}: empty header`);
  const duplicate = header.find((column, index) => header.indexOf(column) !== index);
  if (duplicate !== undefined) {
    throw new CsvFileError(
      `cannot append to CSV file ${path}: column "${duplicate}" appears twice in the header`,
    );
  }
}

function assertRowWidths(path: string, header: string[], rows: string[][]): void {
  const index = rows.findIndex((row) => row.length !== header.length);
  if (index === -1) return;
  throw new CsvFileError(
    `cannot write CSV file ${path}: row ${index} has ${rows[index]?.length} fields but the header has ${header.length}`,
  );
}
