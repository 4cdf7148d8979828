import { appendFileSync } from "node:fs";
import { type Warn, warnOnStderr } from "../log/logger.js";
import type { AttemptFiles } from "../protocol/attemptFiles.js";
import { type PointsRequest, REQUEST_BODY_LIMIT_BYTES } from "../protocol/http.js";
import type { AttemptPoints } from "../protocol/interfaces.js";
import { type EventsCursor, type EventsRead, readEvents } from "./eventLines.js";
import { type CoordinatorClient, HttpError } from "./httpClient.js";

export interface PointRelayOptions {
  /** Sends points to the coordinator (CoordinatorPort.points); resolves once they are stored. */
  send: (batches: AttemptPoints[]) => Promise<unknown>;
  /** How often running attempts' events files are read. (Default: 250 ms) */
  intervalMs?: number;
  /** Outages, one line when one starts. (Default: stderr) */
  warn?: Warn;
}

/** JSON of points one request carries, about: a quarter of the body limit, a line or so over at most. */
const BATCH_BYTES = REQUEST_BODY_LIMIT_BYTES / 4;
/** The least a request is cut down to after 413s: one point of the largest kind fits. */
const MIN_BATCH_BYTES = 64 * 1024;
/** Longest wait between tries while the coordinator does not take points. */
const MAX_BACKOFF_MS = 10_000;

interface Relayed {
  attemptId: number;
  files: Pick<AttemptFiles, "eventsPath" | "logPath">;
  /** Everything before it is stored at the coordinator: a failed send is read again from here. */
  cursor: EventsCursor;
  names: Set<string>;
  exited: boolean;
  /** Dropped lines counted so far (a line read twice, after a failed send, counts once). */
  invalid: number;
  countedLine: number;
}

/**
 * Relays the points tasks report (their attempts' events files, see protocol/points.ts) to the
 * coordinator: every `intervalMs` it reads each running attempt's new whole lines and sends what
 * they hold in one request (or several, each under a quarter of the body limit), and reads once
 * more after the task exits. The events file is the durable copy: only what the coordinator
 * acknowledged moves a file's cursor on, so after an outage the relay sends again from there
 * (the ledger stores idempotently). It runs beside the dispatch loop and never holds it up:
 * sends are not awaited by anyone but the relay, and one pass runs at a time.
 */
export class PointRelay {
  private readonly relayed = new Map<number, Relayed>();
  private timer: NodeJS.Timeout | null = null;
  private passing: Promise<void> | null = null;
  private failures = 0;
  private retryAt = 0;
  /** Callers waiting for an exited attempt's last points to be relayed (see settled). */
  private readonly waiting = new Map<number, Array<() => void>>();
  /** Bytes of points a request carries; halved when a coordinator refuses one as too large. */
  private batchBytes = BATCH_BYTES;
  /** Set when the coordinator has no points endpoint (an older version): nothing is sent again. */
  private unsupported = false;
  /** Which attempt a pass reads first, turning: one chatty task must not starve the others. */
  private turn = 0;
  /** A timer's pass came while another ran: the next pass reads every attempt's file. */
  private everyoneWanted = false;

  constructor(private readonly options: PointRelayOptions) {}

  /** Relays `attemptId`'s events file from its start. */
  watch(attemptId: number, files: Pick<AttemptFiles, "eventsPath" | "logPath">): void {
    const cursor = { offset: 0, line: 0, skipping: false };
    this.relayed.set(attemptId, {
      attemptId,
      files,
      cursor,
      names: new Set(),
      exited: false,
      invalid: 0,
      countedLine: 0,
    });
    if (this.timer) return;
    this.timer = setInterval(() => this.kick(true), this.options.intervalMs ?? 250);
    this.timer.unref();
  }

  /** The task has exited: its file is read to its end, unfinished last line included, then let go. */
  exited(attemptId: number): void {
    const entry = this.relayed.get(attemptId);
    if (!entry) return;
    entry.exited = true;
    this.kick();
  }

  /**
   * Resolves once an exited attempt's points are all relayed, or after `timeoutMs` (the
   * coordinator is away: they stay in the file, and the finish report must not wait for them).
   */
  settled(attemptId: number, timeoutMs: number): Promise<void> | undefined {
    // Already relayed (the usual case: a task that reports nothing): undefined, so the caller
    // reports the attempt's end now rather than a turn of the event loop later.
    if (!this.relayed.has(attemptId)) return undefined;
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.waiting.set(attemptId, [...(this.waiting.get(attemptId) ?? []), done]);
    });
  }

  /**
   * Relays what exited attempts left, for up to `timeoutMs` (the agent is exiting), then stops.
   * Attempts still running (the agent is leaving on an error) are not waited for.
   */
  async drain(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const left = (): boolean => [...this.relayed.values()].some((entry) => entry.exited);
    while (left() && Date.now() < deadline) {
      this.kick();
      await (this.passing ?? new Promise((resolve) => setTimeout(resolve, 100)));
    }
    this.stop();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /**
   * Starts a pass over the exited attempts' files, or with `everyone` (the timer's) over every
   * attempt's. An exit reads only what exited: with eight slots of no-op tasks, reading every
   * running task's file at each exit was a stat per slot per task, a twentieth of node's CPU.
   */
  private kick(everyone = false): void {
    if (everyone) this.everyoneWanted = true;
    if (this.passing || Date.now() < this.retryAt || this.relayed.size === 0) return;
    const all = this.everyoneWanted;
    this.everyoneWanted = false;
    this.passing = this.pass(all).finally(() => {
      this.passing = null;
      // An attempt that exited during the pass is read to its end now, not a tick later: its
      // finish report waits for it. A tick that came meanwhile has its pass now too.
      if (this.everyoneWanted || [...this.relayed.values()].some((entry) => entry.exited))
        setImmediate(() => this.kick());
    });
  }

  /** Reads and sends until every file (every exited one, without `all`) is caught up, or a send fails. */
  private async pass(all: boolean): Promise<void> {
    for (;;) {
      const entries = [...this.relayed.values()].filter((entry) => all || entry.exited);
      if (entries.length === 0) return;
      const first = this.turn++ % entries.length;
      // Whether each read was made after its task exited: only such a read may find the file done.
      const reads = new Map<Relayed, { read: EventsRead; final: boolean }>();
      const batches: AttemptPoints[] = [];
      let budget = this.batchBytes;
      for (const entry of [...entries.slice(first), ...entries.slice(0, first)]) {
        if (budget <= 0) break;
        const read = readEvents(entry.files.eventsPath, entry.cursor, entry.names, entry.exited, budget);
        reads.set(entry, { read, final: entry.exited });
        this.noteInvalid(entry, read);
        if (read.points.length > 0) batches.push({ attemptId: entry.attemptId, points: read.points });
        budget -= read.bytes;
      }
      if (batches.length > 0 && !(await this.sent(batches))) return;
      for (const [entry, { read, final }] of reads) {
        const idle = read.cursor.offset === entry.cursor.offset;
        entry.cursor = read.cursor;
        if (final && idle) this.release(entry);
      }
      if (budget > 0) return;
    }
  }

  private async sent(batches: AttemptPoints[]): Promise<boolean> {
    if (this.unsupported) return true;
    try {
      await this.options.send(batches);
    } catch (error) {
      if (error instanceof HttpError && error.status === 413 && this.batchBytes > MIN_BATCH_BYTES) {
        this.batchBytes = Math.max(MIN_BATCH_BYTES, this.batchBytes / 2);
        return false;
      }
      if (error instanceof HttpError && error.status === 404) {
        // Points are dropped (they stay in the files); tasks run on as before.
        this.unsupported = true;
        (this.options.warn ?? warnOnStderr)(
          `labsweep: the coordinator does not take live metrics (an older version?): ${error.message}`,
        );
        return true;
      }
      if (this.failures === 0)
        (this.options.warn ?? warnOnStderr)(
          `labsweep: could not relay live metrics (kept in the tasks' events files, sent again when the coordinator takes them): ${error instanceof Error ? error.message : String(error)}`,
        );
      this.failures++;
      this.retryAt = Date.now() + Math.min(MAX_BACKOFF_MS, 250 * 2 ** Math.min(this.failures, 8));
      return false;
    }
    this.failures = 0;
    this.retryAt = 0;
    return true;
  }

  /** Tells the task's log of its first dropped line, once; later ones are counted. */
  private noteInvalid(entry: Relayed, read: EventsRead): void {
    for (const { line, error } of read.invalid) {
      if (line <= entry.countedLine) continue;
      entry.countedLine = line;
      entry.invalid++;
      if (entry.invalid === 1)
        this.toLog(
          entry,
          `labsweep: dropped line ${line} of LABSWEEP_EVENTS_FILE (${error}); later bad lines are dropped and counted at the end`,
        );
    }
  }

  private release(entry: Relayed): void {
    this.relayed.delete(entry.attemptId);
    for (const done of this.waiting.get(entry.attemptId) ?? []) done();
    this.waiting.delete(entry.attemptId);
    if (entry.invalid > 1)
      this.toLog(entry, `labsweep: ${entry.invalid} lines of LABSWEEP_EVENTS_FILE were dropped in all`);
  }

  private toLog(entry: Relayed, message: string): void {
    try {
      appendFileSync(entry.files.logPath, `\n${message}\n`);
    } catch (error) {
      (this.options.warn ?? warnOnStderr)(
        `${message} (could not write the task's log: ${(error as Error).message})`,
      );
    }
  }
}

/**
 * `POST /agents/:agentId/points`, tried once: on a failure the relay reads the files again
 * from what was acknowledged and sends later.
 */
export function postPoints(
  client: CoordinatorClient,
  agentId: string,
  batches: AttemptPoints[],
): Promise<unknown> {
  const body: PointsRequest = { attempts: batches };
  return client.call("POST", `/agents/${encodeURIComponent(agentId)}/points`, body, {
    retries: 0,
    timeoutMs: 10_000,
  });
}
