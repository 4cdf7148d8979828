import { open, stat } from "node:fs/promises";

/** What became of one chunk: "stop" when the coordinator wants no more of this attempt's log. */
export type ChunkVerdict = "ok" | "stop" | "too-large";

export interface LogStreamOptions {
  logPath: string;
  /** Sends one chunk; rejects on a network error (the chunk is sent again next time). */
  send: (offset: number, text: string) => Promise<ChunkVerdict>;
  /** How much of the log is sent while the task runs; the final tail is sent on top. (Default: 1 MiB) */
  capBytes?: number;
  /** Largest chunk per request. (Default: 256 KiB) */
  chunkBytes?: number;
  /** How often new output is sent. (Default: 1 s) */
  periodMs?: number;
}

const MiB = 1024 * 1024;

/**
 * Streams a running task's log to the coordinator, so it can be read on a machine with no shared
 * filesystem: every second the new bytes since the last chunk, at their byte offset. What is
 * sent per attempt is capped: a log that outgrows the cap is skipped ahead to its tail, and once
 * the cap is spent only the final tail goes (see `finish`). Chunks end on UTF-8 character
 * boundaries, so no character is split between two.
 */
export class LogStream {
  private sentTo = 0;
  private sentBytes = 0;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | null = null;
  private chunkBytes: number;
  private readonly capBytes: number;

  constructor(private readonly options: LogStreamOptions) {
    this.capBytes = options.capBytes ?? MiB;
    this.chunkBytes = options.chunkBytes ?? 256 * 1024;
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), this.options.periodMs ?? 1000);
    this.timer.unref();
  }

  /**
   * Stops streaming and returns the part of the log's last `capBytes` the coordinator has not
   * been sent, for the finish report (undefined when it has it all).
   */
  async finish(): Promise<{ offset: number; text: string } | undefined> {
    clearInterval(this.timer);
    this.stopped = true;
    await this.inFlight;
    const size = await sizeOf(this.options.logPath);
    if (size <= this.sentTo) return undefined;
    let from = Math.max(this.sentTo, size - this.capBytes);
    const bytes = await readRange(this.options.logPath, from, size);
    // Skipped ahead: start at a character, not inside one.
    const skip = from > this.sentTo ? leadingContinuationBytes(bytes) : 0;
    from += skip;
    return { offset: from, text: bytes.subarray(skip).toString("utf8") };
  }

  private tick(): void {
    if (this.inFlight || this.stopped) return;
    this.inFlight = this.pump()
      .catch(() => undefined) // unreachable now: the same bytes go next time
      .finally(() => {
        this.inFlight = null;
      });
  }

  /** Sends what was written since the last chunk, within the cap. */
  private async pump(): Promise<void> {
    const size = await sizeOf(this.options.logPath);
    const budget = this.capBytes - this.sentBytes;
    if (size <= this.sentTo || budget <= 0) return;
    let from = Math.max(this.sentTo, size - budget);
    const to = Math.min(size, from + this.chunkBytes);
    const bytes = await readRange(this.options.logPath, from, to);
    const skip = from > this.sentTo ? leadingContinuationBytes(bytes) : 0;
    const end = bytes.length - incompleteTail(bytes); // the rest of it comes next time
    if (end <= skip) return; // only part of a character so far
    from += skip;
    const chunk = bytes.subarray(skip, end);
    const verdict = await this.options.send(from, chunk.toString("utf8"));
    if (this.stopped) return;
    if (verdict === "stop") {
      this.stopped = true;
      clearInterval(this.timer);
    } else if (verdict === "too-large") {
      this.chunkBytes = Math.max(4096, Math.floor(this.chunkBytes / 2));
    } else {
      this.sentTo = from + chunk.length;
      this.sentBytes += chunk.length;
    }
  }
}

async function sizeOf(path: string): Promise<number> {
  try {
    // One stat, not open, fstat and close: it runs once per task at least.
    return (await stat(path)).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return 0;
    throw error;
  }
}

async function readRange(path: string, from: number, to: number): Promise<Buffer> {
  const handle = await open(path, "r");
  try {
    const buffer = Buffer.alloc(to - from);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, from);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/**
 * Splits a log chunk into pieces of at most `maxBytes` UTF-8 bytes, each at its own byte offset,
 * cut between characters.
 */
export function logPieces(
  log: { offset: number; text: string },
  maxBytes: number,
): Array<{ offset: number; text: string }> {
  const bytes = Buffer.from(log.text, "utf8");
  const pieces: Array<{ offset: number; text: string }> = [];
  for (let start = 0; start < bytes.length; ) {
    let piece = bytes.subarray(start, Math.min(bytes.length, start + maxBytes));
    const cut = start + piece.length < bytes.length ? incompleteTail(piece) : 0;
    if (cut < piece.length) piece = piece.subarray(0, piece.length - cut);
    pieces.push({ offset: log.offset + start, text: piece.toString("utf8") });
    start += piece.length;
  }
  return pieces;
}

/** UTF-8 continuation bytes (10xxxxxx) at the start: the rest of a character begun earlier. */
function leadingContinuationBytes(bytes: Buffer): number {
  let count = 0;
  while (count < Math.min(3, bytes.length) && ((bytes[count] as number) & 0xc0) === 0x80) count++;
  return count;
}

/** Bytes at the end that begin a character whose remaining bytes are not written yet. */
export function incompleteTail(bytes: Buffer): number {
  for (let back = 1; back <= Math.min(4, bytes.length); back++) {
    const byte = bytes[bytes.length - back] as number;
    if ((byte & 0xc0) === 0x80) continue; // continuation: keep looking for the lead byte
    const length = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return length > back ? back : 0;
  }
  return 0; // only continuation bytes: not UTF-8 text, send as is
}
