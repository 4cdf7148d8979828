import { closeSync, openSync, readSync, statSync } from "node:fs";
import type { MetricPoint } from "../protocol/interfaces.js";
import { MAX_EVENT_LINE_BYTES, MAX_SERIES_PER_TASK, readEventLine } from "../protocol/points.js";

/** Bytes read from one events file per pass: several lines' worth, never a runaway file's all. */
const READ_BYTES = 256 * 1024;
const NEWLINE = 0x0a;
const EMPTY = Buffer.alloc(0);

/** Where reading an events file stands: everything before `offset` has been read. */
export interface EventsCursor {
  offset: number;
  /** Lines before `offset`, so a dropped line can be named by its number. */
  line: number;
  /** `offset` is inside a line over MAX_EVENT_LINE_BYTES, being skipped to its end. */
  skipping: boolean;
}

export interface EventsRead {
  cursor: EventsCursor;
  points: MetricPoint[];
  /** Bytes of the points as JSON: what sending them costs. */
  bytes: number;
  /** Lines dropped, each with its number and why. */
  invalid: Array<{ line: number; error: string }>;
}

/**
 * The points of the whole lines after `cursor` (at most READ_BYTES of them). A last line without
 * its "\n" is still being written and is left for the next read — unless `final` (the task has
 * exited), when it is all there will ever be. `names` are the task's metric names so far: names
 * past MAX_SERIES_PER_TASK are dropped here, before they cost a request. A missing file reads as
 * empty (the task has not created it, or never will). Reading stops after the line that brings
 * the points' size (as JSON) to `budget` bytes: the rest waits for the next request.
 */
export function readEvents(
  path: string,
  cursor: EventsCursor,
  names: Set<string>,
  final: boolean,
  budget: number,
): EventsRead {
  const chunk = readFrom(path, cursor.offset);
  // A read cut short by READ_BYTES ends inside the file, not at its last line.
  const atEnd = final && chunk.length < READ_BYTES;
  const now = Date.now() / 1000;
  const read: EventsRead = { cursor: { ...cursor }, points: [], bytes: 0, invalid: [] };
  let start = 0;
  while (read.bytes < budget) {
    const end = chunk.indexOf(NEWLINE, start);
    const whole = end >= 0;
    // A line without its end: wait for it, unless nothing more will come or it is too long already.
    if (!whole && !atEnd && chunk.length - start <= MAX_EVENT_LINE_BYTES) break;
    if (!whole && start === chunk.length) break;
    const stop = whole ? end : chunk.length;
    if (!read.cursor.skipping) take(read, chunk.toString("utf8", start, stop), stop - start, names, now);
    if (whole) {
      read.cursor.line++;
      read.cursor.skipping = false;
    } else read.cursor.skipping = !atEnd; // over the limit: its rest is skipped as it arrives
    read.cursor.offset += stop + (whole ? 1 : 0) - start;
    start = stop + (whole ? 1 : 0);
  }
  return read;
}

function take(read: EventsRead, text: string, bytes: number, names: Set<string>, now: number): void {
  const number = read.cursor.line + 1;
  if (bytes > MAX_EVENT_LINE_BYTES) {
    read.invalid.push({ line: number, error: `longer than ${MAX_EVENT_LINE_BYTES / 1024} KiB` });
    return;
  }
  if (text.trim() === "") return;
  const reading = readEventLine(text, now);
  if (reading.kind === "invalid") read.invalid.push({ line: number, error: reading.error });
  if (reading.kind !== "point") return;
  const metrics: Record<string, number> = {};
  let kept = 0;
  for (const [name, value] of Object.entries(reading.point.metrics)) {
    if (!names.has(name) && names.size >= MAX_SERIES_PER_TASK) continue;
    names.add(name);
    metrics[name] = value;
    kept++;
  }
  if (kept === 0) return;
  const point = { ...reading.point, metrics };
  read.points.push(point);
  read.bytes += Buffer.byteLength(JSON.stringify(point));
}

/**
 * Up to READ_BYTES of the file from `offset`; empty when it does not exist (yet). Its size is
 * looked at first: most passes find nothing new, and most tasks write no events file at all.
 */
function readFrom(path: string, offset: number): Buffer {
  const size = statSync(path, { throwIfNoEntry: false })?.size ?? 0;
  if (size <= offset) return EMPTY;
  const fd = openSync(path, "r");
  try {
    const buffer = Buffer.allocUnsafe(Math.min(READ_BYTES, size - offset));
    const length = readSync(fd, buffer, 0, buffer.length, offset);
    return buffer.subarray(0, length);
  } finally {
    closeSync(fd);
  }
}
