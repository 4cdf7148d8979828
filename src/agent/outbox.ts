import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { open, readFile, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from "../files/privateFiles.js";
import { type Logger, logger } from "../log/logger.js";
import type { FinishRequest } from "../protocol/http.js";

/** One attempt's finish report, as kept on the agent's disk until the coordinator has it. */
export interface OutboxRecord {
  attemptId: number;
  request: FinishRequest;
  /** The end of the attempt's log the coordinator has not been sent yet. */
  log?: { offset: number; text: string };
}

/**
 * Sends one report. Resolves "sent" once the coordinator answered 2xx (accepted or duplicate),
 * or with the reason it refused it for good; rejects when sending should stop (the signal
 * aborted, the token was rejected): the file stays for the next try.
 */
export type Deliver = (record: OutboxRecord, signal: AbortSignal) => Promise<"sent" | { refused: string }>;

export interface OutboxOptions {
  /** Notices: refused reports, send failures. (Default: stderr) */
  warn?: (message: string) => void;
  /** Called when sending stopped on an error other than the abort of `close()`. */
  onError?: (error: unknown) => void;
  /**
   * How long a new report waits before the sender takes it, in ms (asked at each put): while
   * leases go out every few milliseconds they carry the reports, one request for many instead of
   * one each. (Default: 0, at once)
   */
  sendDelayMs?: () => number;
}

/**
 * Finish reports survive the agent and the network: each is written to its own file in
 * `<state>/outbox/` (temp name, fsync, rename, fsync of the dir) before it is sent, and the file
 * is deleted only after a 2xx. Reports are sent one at a time, oldest attempt first; files left
 * by a previous incarnation are loaded first. A report the coordinator refuses for good (a 4xx)
 * is moved to `outbox/refused/` with the reason, for a human to look at.
 */
export class Outbox {
  private readonly ids = new Set<number>();
  /** Records put by this incarnation, kept so a lease can carry them without reading files. */
  private readonly records = new Map<number, OutboxRecord>();
  /** Reports a lease request is carrying (carry()): the sender leaves them alone. */
  private readonly carried = new Set<number>();
  /** The report the sender is sending right now. */
  private sendingId: number | null = null;
  private readonly controller = new AbortController();
  private sending: Promise<void> | null = null;
  /** A sender start put off by sendDelayMs. */
  private delayed: NodeJS.Timeout | null = null;
  private stopped: unknown = null;
  private readonly log: Logger;

  constructor(
    readonly dir: string,
    private readonly deliver: Deliver,
    private readonly options: OutboxOptions = {},
  ) {
    mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    this.log = logger("agent", options.warn);
    for (const name of readdirSync(dir)) {
      const id = /^(\d+)\.json$/.exec(name)?.[1];
      if (id !== undefined) this.ids.add(Number(id));
      // A temp file is a report whose write was cut short: its task's attempt is requeued.
      else if (name.endsWith(".tmp")) rmSync(join(dir, name), { force: true });
    }
    const sorted = [...this.ids].sort((a, b) => a - b);
    this.ids.clear();
    for (const id of sorted) this.ids.add(id);
  }

  /** Attempts whose reports wait here (the previous incarnation's included). */
  pending(): number[] {
    return [...this.ids];
  }

  /**
   * Writes the report (whole: temp file and rename, so it survives the agent's death at any
   * moment), then starts sending it. `durable`: fsynced too, file and dir, so it also survives
   * the machine's power loss. (Default: true)
   */
  async put(record: OutboxRecord, options: { durable?: boolean } = {}): Promise<void> {
    const durable = options.durable ?? true;
    const path = this.pathOf(record.attemptId);
    const temp = join(this.dir, `.${record.attemptId}.json.${process.pid}.tmp`);
    const file = await open(temp, "w", PRIVATE_FILE_MODE);
    try {
      await file.writeFile(`${JSON.stringify(record)}\n`);
      if (durable) await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, path);
    if (durable) await syncDir(this.dir);
    this.ids.add(record.attemptId);
    this.records.set(record.attemptId, record);
    const delayMs = this.options.sendDelayMs?.() ?? 0;
    if (delayMs <= 0) this.kick();
    else
      this.delayed ??= setTimeout(() => {
        this.delayed = null;
        this.kick();
      }, delayMs);
  }

  /**
   * Hands up to `max` reports, of at most `maxBytes` of JSON together, to a caller that sends
   * them some other way (a lease request carries them): the sender skips them until `settle` or
   * `release`. A report larger than `maxBytes` alone is never carried: the sender sends it in a
   * request of its own. (maxBytes default: no limit)
   */
  carry(max: number, maxBytes = Number.POSITIVE_INFINITY): OutboxRecord[] {
    const taken: OutboxRecord[] = [];
    let bytes = 0;
    for (const id of this.ids) {
      if (taken.length >= max) break;
      const record = this.records.get(id);
      if (!record || this.carried.has(id) || this.sendingId === id) continue;
      const size = reportBytes(record);
      if (size > maxBytes) continue;
      if (bytes + size > maxBytes) break;
      bytes += size;
      this.carried.add(id);
      taken.push(record);
    }
    return taken;
  }

  /** Carried reports the coordinator answered: recorded ones are deleted, refused ones set aside. */
  async settle(verdicts: Array<{ attemptId: number; refused?: string }>): Promise<void> {
    for (const { attemptId, refused } of verdicts) {
      if (!this.carried.has(attemptId)) continue;
      if (refused === undefined) await unlink(this.pathOf(attemptId)).catch(ignoreMissing);
      else await this.setAside(attemptId, refused);
      this.carried.delete(attemptId);
      this.ids.delete(attemptId);
      this.records.delete(attemptId);
    }
    this.kick();
  }

  /** Carried reports that did not get there: the sender takes them back. */
  release(attemptIds: number[]): void {
    for (const id of attemptIds) this.carried.delete(id);
    this.kick();
  }

  /** Starts sending what is waiting, unless a sender is already at it or the outbox is closed. */
  kick(): void {
    if (this.sending || this.controller.signal.aborted || this.nextToSend() === undefined) return;
    this.stopped = null;
    this.sending = this.sendAll().finally(() => {
      this.sending = null;
      // A report put just as the sender finished would otherwise wait for the next put.
      if (!this.stopped) this.kick();
    });
  }

  /**
   * Sends everything waiting; resolves true once the outbox is empty, false when `timeoutMs` ran
   * out, `signal` aborted, or sending stopped on an error first.
   */
  async flush(options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<boolean> {
    const deadline = Date.now() + (options.timeoutMs ?? Number.POSITIVE_INFINITY);
    this.kick();
    while (this.ids.size > 0 && this.sending && !options.signal?.aborted) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      let timer: NodeJS.Timeout | undefined;
      let onAbort: (() => void) | undefined;
      await Promise.race([
        this.sending,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, Math.min(left, 2 ** 31 - 1));
          onAbort = resolve;
          options.signal?.addEventListener("abort", onAbort, { once: true });
        }),
      ]);
      clearTimeout(timer);
      if (onAbort) options.signal?.removeEventListener("abort", onAbort);
    }
    return this.ids.size === 0;
  }

  /** Stops sending (requests in flight are aborted); what is left is sent by the next incarnation. */
  async close(): Promise<void> {
    if (this.delayed) clearTimeout(this.delayed);
    this.controller.abort();
    await this.sending;
  }

  /** The error that stopped the last sender, if one did. */
  get error(): unknown {
    return this.stopped;
  }

  /**
   * Sends until nothing is left; an error (the token rejected, a file that cannot be moved or
   * deleted) stops it, told to onError: never a rejection nobody handles, which would end the
   * agent's process with its running tasks.
   */
  private async sendAll(): Promise<void> {
    try {
      await this.sendEach();
    } catch (error) {
      if (this.controller.signal.aborted) return;
      this.stopped = error;
      this.options.onError?.(error);
    }
  }

  private async sendEach(): Promise<void> {
    const signal = this.controller.signal;
    for (;;) {
      const id = this.nextToSend();
      if (id === undefined || signal.aborted) return;
      // Until its file is gone the report is this sender's: a lease must not carry it meanwhile.
      this.sendingId = id;
      try {
        const record = this.records.get(id) ?? (await this.read(id));
        if (!record) continue;
        const verdict = await this.deliver(record, signal);
        if (verdict === "sent") await unlink(this.pathOf(id)).catch(ignoreMissing);
        else await this.setAside(id, verdict.refused);
        this.ids.delete(id);
        this.records.delete(id);
      } finally {
        this.sendingId = null;
      }
    }
  }

  /** The oldest report neither sent nor carried by a lease. */
  private nextToSend(): number | undefined {
    for (const id of this.ids) if (!this.carried.has(id)) return id;
    return undefined;
  }

  /** The record in a file; a file that cannot be read as one is set aside. */
  private async read(id: number): Promise<OutboxRecord | null> {
    let text: string;
    try {
      text = await readFile(this.pathOf(id), "utf8");
    } catch (error) {
      ignoreMissing(error);
      this.ids.delete(id);
      return null;
    }
    try {
      const record = JSON.parse(text) as OutboxRecord;
      if (record.attemptId === id && typeof record.request?.outcome?.kind === "string") return record;
    } catch {
      // fall through: not a report
    }
    await this.setAside(id, "the file is not a finish report");
    this.ids.delete(id);
    return null;
  }

  private async setAside(id: number, reason: string): Promise<void> {
    const refused = join(this.dir, "refused");
    mkdirSync(refused, { recursive: true, mode: PRIVATE_DIR_MODE });
    await rename(this.pathOf(id), join(refused, `${id}.json`)).catch(ignoreMissing);
    this.log.warn(
      `the report of attempt ${id} was refused (${reason}); kept in ${join(refused, `${id}.json`)}`,
    );
  }

  private pathOf(attemptId: number): string {
    return join(this.dir, `${attemptId}.json`);
  }
}

/** The size of a record's report as a lease carries it (its JSON, in bytes). */
export function reportBytes(record: OutboxRecord): number {
  const { outcome, logTail } = record.request;
  return Buffer.byteLength(JSON.stringify({ attemptId: record.attemptId, outcome, logTail }));
}

/** Makes a rename in `dir` durable. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function ignoreMissing(error: unknown): void {
  if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
}
