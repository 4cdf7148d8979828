import type { ServerResponse } from "node:http";
import type { FastifyReply } from "fastify";
import { openEventStream } from "../http/eventStream.js";
import { HttpError } from "../http/httpError.js";
import type { LiveOverview } from "./liveOverview.js";

export interface EventStreamLimits {
  /** Streams open at once; the next one gets 503. */
  maxStreams: number;
  /** Bytes a stream may have waiting for a client that does not read; past it, dropped. */
  bufferLimit: number;
  warn: (message: string) => void;
}

/**
 * The dashboard's server-sent event streams (`GET /api/v1/dashboard/events`): a new overview
 * whenever the ledger changes, and the machines every 2 s while anyone watches.
 */
export class EventStreams {
  private readonly streams = new Set<ServerResponse>();
  private machinesTimer: NodeJS.Timeout | null = null;
  private broadcasting = false;

  /** The last marks of running tasks' series (see pointMarks), to tell which got new points. */
  private marks = new Map<number, string>();

  constructor(
    private readonly live: LiveOverview,
    private readonly machines: () => Promise<unknown>,
    private readonly limits: EventStreamLimits,
    /** Running tasks' series marks (ledger/reads/series.ts runningSeriesMarks). (Default: no points events) */
    private readonly pointMarks?: () => Promise<Map<number, string>>,
  ) {}

  /** Takes the reply over as a stream, or throws 503 when too many are open. */
  async open(reply: FastifyReply): Promise<void> {
    // Each stream holds a socket and a subscription: a bounded number, so viewers cannot
    // exhaust the server by opening them.
    const { maxStreams } = this.limits;
    if (this.streams.size >= maxStreams)
      throw new HttpError(
        503,
        `${maxStreams} dashboard event streams are open already: close a tab, or try again later`,
      );
    const raw = openEventStream(reply);
    const send = (event: string, data: unknown): void =>
      this.writeOrDrop(raw, `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    raw.write("retry: 2000\n\n");
    this.streams.add(raw);
    const unsubscribe = this.live.subscribe((overview) => {
      send("overview", overview);
      this.broadcastMachines();
    });
    const keepAlive = setInterval(() => this.writeOrDrop(raw, ": keep-alive\n\n"), 15_000);
    raw.once("close", () => {
      this.streams.delete(raw);
      unsubscribe();
      clearInterval(keepAlive);
      if (this.streams.size === 0 && this.machinesTimer) {
        clearInterval(this.machinesTimer);
        this.machinesTimer = null;
      }
    });
    if (!this.machinesTimer) {
      this.machinesTimer = setInterval(() => {
        this.broadcastMachines();
        this.broadcastPoints();
      }, 2000);
      this.machinesTimer.unref();
    }
    try {
      send("overview", await this.live.current());
      send("machines", await this.machines());
    } catch (error) {
      this.limits.warn(`labsweep: dashboard: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /** Ends every stream (the server is closing). */
  close(): void {
    if (this.machinesTimer) clearInterval(this.machinesTimer);
    this.machinesTimer = null;
    for (const stream of this.streams) stream.end();
    this.streams.clear();
  }

  // A client that does not read would make the server buffer every event for it: once more than
  // `bufferLimit` bytes wait for it, its stream is dropped (the page reconnects if it is alive).
  private writeOrDrop(stream: ServerResponse, text: string): void {
    if (stream.destroyed || stream.writableEnded) return;
    // Checked before writing: one large event may wait, but not the next one behind it.
    if (stream.writableLength > this.limits.bufferLimit) {
      this.limits.warn(
        `labsweep: dashboard: dropped an event stream whose client does not read (${stream.writableLength} bytes waiting)`,
      );
      stream.destroy();
      return;
    }
    stream.write(text);
  }

  // Machines go to every stream every 2 s (heartbeats and GPU readings are no ledger events),
  // and at once after each new overview (a task started or ended somewhere): one query for all.
  private broadcastMachines(): void {
    if (this.broadcasting || this.streams.size === 0) return;
    this.broadcasting = true;
    void this.machines()
      .then((data) => {
        const text = `event: machines\ndata: ${JSON.stringify(data)}\n\n`;
        for (const stream of this.streams) this.writeOrDrop(stream, text);
      })
      .catch((error: Error) => this.limits.warn(`labsweep: dashboard: ${error.message}`))
      .finally(() => {
        this.broadcasting = false;
      });
  }

  // `points` ({taskIds}) names the running tasks that got new live points since the last look,
  // every 2 s with the machines, so a task page redraws its curves without polling.
  private broadcastPoints(): void {
    if (!this.pointMarks || this.streams.size === 0) return;
    void this.pointMarks()
      .then((marks) => {
        const taskIds = [...marks].filter(([id, mark]) => this.marks.get(id) !== mark).map(([id]) => id);
        this.marks = marks;
        if (taskIds.length === 0) return;
        const text = `event: points\ndata: ${JSON.stringify({ taskIds })}\n\n`;
        for (const stream of this.streams) this.writeOrDrop(stream, text);
      })
      .catch((error: Error) => this.limits.warn(`labsweep: dashboard: ${error.message}`));
  }
}
