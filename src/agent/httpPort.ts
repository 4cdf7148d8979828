import { logger, type Warn } from "../log/logger.js";
import type { Capacity } from "../protocol/capacity.js";
import {
  type AgentCapabilities,
  type HeartbeatResponse,
  type LeaseRequest,
  type LeaseResponse,
  REQUEST_BODY_LIMIT_BYTES,
  type RegisterResponse,
  type ReportVerdict,
} from "../protocol/http.js";
import type { GpuSample, Lease } from "../protocol/interfaces.js";
import type { AttemptEnd } from "./artifacts.js";
import { Contact } from "./contact.js";
import type { CoordinatorPort } from "./coordinatorPort.js";
import { type CoordinatorClient, HttpError, isAbort, type UnauthorizedError } from "./httpClient.js";
import type { ChunkVerdict } from "./logStream.js";
import type { Outbox, OutboxRecord } from "./outbox.js";
import { deliverReport, sendFinalLog } from "./reportDelivery.js";

/** Reports one lease request carries at most. */
const MAX_CARRIED_REPORTS = 64;
/** …and bytes of them: half the body limit leaves room for the rest; a larger report goes alone. */
const CARRIED_REPORT_BYTES = REQUEST_BODY_LIMIT_BYTES / 2;
/** Reports of tasks that ran at least this long are fsynced in the outbox (see HttpPort.finish). */
const DURABLE_REPORT_SECONDS = 1;
/** A task is reported started once it has run this long (see HttpPort.started). */
const STARTED_NOTICE_MS = 250;

export interface HttpPortOptions {
  agentId: string;
  /** The agent's slot count: with every slot free, no running task can free more capacity. */
  slots: number;
  /** Where finish reports go before they are sent. */
  outbox: Outbox;
  /** Never say the sweep is done: keep waiting for new work (`--stay`). (Default: false) */
  stay?: boolean;
  /** How long a lease may wait for work while the agent is idle. (Default: 25 s) */
  idleWaitMs?: number;
  /**
   * …and while tasks run: the coordinator matches a waiting lease against the capacity it was
   * sent with, so capacity a finishing task frees is offered after at most this. (Default: 2 s)
   */
  busyWaitMs?: number;
  /** Heartbeat timeout. (Default: 3 s) */
  heartbeatTimeoutMs?: number;
  /** Called once when the coordinator rejects the token: the agent must stop. */
  onFatal?: (error: UnauthorizedError) => void;
  /** Notices, one line each. (Default: stderr) */
  warn?: Warn;
}

/**
 * The `CoordinatorPort` over HTTP (`/api/v1`, see protocol/http.ts). Leases long-poll: an idle
 * agent's request waits at the coordinator and gets a task the moment one fits. While the
 * coordinator is unreachable, leasing waits and retries (the client's backoff and failover) and
 * running tasks go on; their reports wait in the outbox. Heartbeats and task-start notices are
 * best-effort (a missed one is followed by the next); a 401 anywhere is fatal (`onFatal`).
 */
export class HttpPort implements CoordinatorPort {
  private capabilities: AgentCapabilities | null = null;
  private lastDone = false;
  /** Why the coordinator's unfinished tasks fit nowhere here, when it said `done` with some left. */
  unfit: string[] = [];
  /** Whether the last lease waited out its time at the coordinator without a task. */
  private lastWaited = false;
  private heartbeating = false;
  private wake: (() => void) | null = null;
  private readonly contact = new Contact((error) => this.options.onFatal?.(error));
  /** Ends the lease request in flight, if any (see sweepDone). */
  private endLease: (() => void) | null = null;
  /** Start notices not sent yet (see started). */
  private readonly startNotices = new Map<number, NodeJS.Timeout>();
  /** Bytes of reports a lease may carry; lowered when a coordinator refuses one as too large. */
  private carryBytes = CARRIED_REPORT_BYTES;

  constructor(
    readonly client: CoordinatorClient,
    private readonly options: HttpPortOptions,
  ) {}

  /** `POST /agents`, retried until the coordinator answers; returns its lease settings. */
  async register(capabilities: AgentCapabilities, signal?: AbortSignal): Promise<RegisterResponse> {
    this.capabilities = capabilities;
    const answer = await this.contact.guard(() =>
      this.client.call<RegisterResponse>("POST", "/agents", capabilities, { signal }),
    );
    this.contact.leaseIs(answer.leaseMs);
    return answer;
  }

  /**
   * Leases up to `max` tasks (long-poll), carrying the outbox's waiting reports. While contact
   * with the coordinator is sound, the slot a task freed is leased again at once, its report
   * following on its own. After trouble (a failed request, or silence longer than a heartbeat or
   * two), every report is delivered first: the coordinator may have requeued those tasks while
   * it could not hear the agent, and must learn they are done before handing them out again.
   */
  async lease(request: {
    capacity: Capacity;
    signal?: AbortSignal;
    max?: number;
    waitMs?: number;
  }): Promise<Lease[]> {
    // The coordinator said the sweep is over (it may have exited since): nothing to ask it.
    if (this.lastDone && !this.options.stay) return [];
    const waitMs =
      request.waitMs ??
      (request.capacity.freeSlots < this.options.slots
        ? (this.options.busyWaitMs ?? 2000)
        : (this.options.idleWaitMs ?? 25_000));
    this.lastWaited = false;
    const outbox = this.options.outbox;
    // A report the coordinator keeps failing (5xx) holds leasing up for a while, not for ever.
    if (outbox.pending().length > 0 && !this.contact.sound())
      await outbox.flush({ signal: request.signal, timeoutMs: 30_000 });
    const carried = outbox.carry(MAX_CARRIED_REPORTS, this.carryBytes);
    const started = Date.now();
    // A "done" on the channel ends a lease still held: the coordinator is about to exit.
    const sweepOver = new AbortController();
    this.endLease = () => sweepOver.abort();
    const signal = request.signal ? AbortSignal.any([request.signal, sweepOver.signal]) : sweepOver.signal;
    let response: LeaseResponse;
    try {
      response = await this.postLease(request, waitMs, carried, signal);
    } catch (error) {
      if (signal.aborted && isAbort(error)) return [];
      throw error;
    } finally {
      this.endLease = null;
    }
    this.settleCarried(carried, response.reports ?? []);
    this.lastDone ||= response.done === true;
    if (response.done && response.unfit) this.unfit = response.unfit;
    const leases = response.leases ?? (response.lease ? [response.lease] : []);
    // A lease answered "nothing" early is not a wait; polling again at once would spin.
    this.lastWaited =
      waitMs > 0 && leases.length === 0 && !response.done && Date.now() - started >= waitMs / 2;
    return leases;
  }

  /**
   * `POST /lease`, carrying `carried`. A coordinator that refuses the request as too large (413)
   * or malformed (400) while it carries reports gets it again without them: they go back to the
   * outbox's sender, one request each, and later leases carry less. A lease is never a reason to
   * stop the agent and its running tasks; a request without reports that is still too large
   * leases nothing this time.
   */
  private async postLease(
    request: { capacity: Capacity; max?: number },
    waitMs: number,
    carried: OutboxRecord[],
    signal: AbortSignal,
  ): Promise<LeaseResponse> {
    // JSON has no Infinity: "no CPU limit" travels as null (the coordinator reads it so).
    const body = (reports: OutboxRecord[]): LeaseRequest => ({
      agentId: this.options.agentId,
      capacity: request.capacity,
      waitMs,
      max: request.max ?? 1,
      reports: reports.map(({ attemptId, request: report }) => ({
        attemptId,
        outcome: report.outcome,
        logTail: report.logTail,
      })),
    });
    const post = (reports: OutboxRecord[]) =>
      this.withRegistration(() =>
        this.client.call<LeaseResponse>("POST", "/lease", body(reports), {
          timeoutMs: waitMs + 15_000,
          signal,
        }),
      );
    const outbox = this.options.outbox;
    const nothing: LeaseResponse = { lease: null, leases: [], reports: [], done: false };
    try {
      return await post(carried);
    } catch (error) {
      outbox.release(carried.map((record) => record.attemptId));
      const refused = error instanceof HttpError && (error.status === 413 || error.status === 400);
      if (!refused || (carried.length === 0 && error.status === 400)) throw error;
      if (carried.length === 0) {
        this.warn(`the coordinator refused a lease as too large (${error.detail})`);
        return nothing;
      }
      const sent = Buffer.byteLength(JSON.stringify(body(carried)));
      this.carryBytes = Math.min(this.carryBytes, Math.floor(sent / 2));
      this.warn(
        `the coordinator refused a lease carrying ${carried.length} report(s) (${error.status}: ${error.detail}); they go one by one, and leases carry at most ${this.carryBytes} bytes of reports from now on`,
      );
    }
    try {
      return await post([]);
    } catch (error) {
      if (!(error instanceof HttpError && error.status === 413)) throw error;
      this.warn(`the coordinator refused a lease as too large (${error.detail})`);
      return nothing;
    }
  }

  private warn(message: string): void {
    logger("agent", this.options.warn).warn(message);
  }

  /**
   * Carried reports the coordinator recorded leave the outbox — after the unsent end of their
   * log, which a lease does not carry; refused ones are set aside; any it did not answer go back
   * to the sender.
   */
  private settleCarried(carried: OutboxRecord[], verdicts: ReportVerdict[]): void {
    if (carried.length === 0) return;
    const byAttempt = new Map(verdicts.map((verdict) => [verdict.attemptId, verdict]));
    const outbox = this.options.outbox;
    outbox.release(carried.filter((record) => !byAttempt.has(record.attemptId)).map((r) => r.attemptId));
    void (async () => {
      for (const record of carried) {
        const verdict = byAttempt.get(record.attemptId);
        if (!verdict) continue;
        if ("error" in verdict) {
          await outbox.settle([{ attemptId: record.attemptId, refused: verdict.error }]);
          continue;
        }
        if (record.log)
          await sendFinalLog(this.client, this.contact, record, AbortSignal.timeout(30_000)).catch(
            () => undefined,
          );
        await outbox.settle([{ attemptId: record.attemptId }]);
      }
    })().catch((error: unknown) => this.contact.noteFatal(error));
  }

  /**
   * Between leases: at once after a lease that waited its full time at the coordinator (it was
   * the wait); otherwise until the channel says there is work, or `maxWaitMs`.
   */
  awaitWork(maxWaitMs: number): Promise<void> {
    if (this.lastWaited) {
      this.lastWaited = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        if (this.wake === done) this.wake = null;
        resolve();
      };
      const timer = setTimeout(done, maxWaitMs);
      this.wake = done;
    });
  }

  /** The channel said work may be claimable. */
  notifyWork(): void {
    this.wake?.();
  }

  /** The channel said the sweep has finished: nothing will be leased again. */
  sweepDone(): void {
    if (this.options.stay) return;
    this.lastDone = true;
    this.endLease?.();
    this.wake?.();
  }

  /**
   * Renews the leases of running tasks and of finished ones whose reports are still in the
   * outbox, so the coordinator does not requeue a task whose report is on its way. Returns the
   * stale attempts among `attemptIds`; [] when the coordinator cannot be reached.
   */
  /** Reports in the outbox not yet accepted: heartbeats renew their attempts' leases. */
  unsentReports(): number {
    return this.options.outbox.pending().length;
  }

  async heartbeat(attemptIds: number[], gpus?: GpuSample[]): Promise<number[]> {
    if (this.heartbeating) return [];
    this.heartbeating = true;
    const asked = new Set(attemptIds);
    const ids = [...new Set([...attemptIds, ...this.options.outbox.pending()])];
    try {
      const response = await this.withRegistration(() =>
        this.client.call<HeartbeatResponse>(
          "POST",
          "/heartbeat",
          { agentId: this.options.agentId, attemptIds: ids, ...(gpus ? { gpus } : {}) },
          { retries: 0, timeoutMs: this.options.heartbeatTimeoutMs ?? 3000 },
        ),
      );
      return response.stale.filter((id) => asked.has(id));
    } catch (error) {
      this.contact.noteFatal(error);
      return []; // unreachable: the next heartbeat tries again
    } finally {
      this.heartbeating = false;
    }
  }

  /**
   * Tells the coordinator the task's pid, which only the dashboard shows (a task is running, not
   * "next up"): a few tries, never fails the task. Told once the task has run STARTED_NOTICE_MS,
   * so tasks shorter than that (many per second on an agent) cost no request of their own.
   */
  async started(attemptId: number, pid: number, _logPath: string): Promise<void> {
    const notice = setTimeout(() => {
      this.startNotices.delete(attemptId);
      void this.client
        .call(
          "POST",
          `/attempts/${attemptId}/started`,
          { agentId: this.options.agentId, pid },
          { retries: 3 },
        )
        .catch((error) => this.contact.noteFatal(error));
    }, STARTED_NOTICE_MS);
    notice.unref();
    this.startNotices.set(attemptId, notice);
  }

  /** Writes the report to the outbox (durably) and returns; it is sent from there. */
  async finish(attemptId: number, report: AttemptEnd, log?: OutboxRecord["log"]): Promise<void> {
    clearTimeout(this.startNotices.get(attemptId));
    this.startNotices.delete(attemptId);
    const request = { agentId: this.options.agentId, outcome: report.outcome, logTail: report.logTail };
    // A report lost to a power cut costs its task a rerun (its lease runs out). For a task of
    // a second or more that is worth two fsyncs; for a task of milliseconds (hundreds a second,
    // each fsync a journal commit that stalls the machine's other file operations) it is not.
    const wallSeconds =
      "wallSeconds" in report.outcome ? report.outcome.wallSeconds : Number.POSITIVE_INFINITY;
    await this.options.outbox.put(
      { attemptId, request, ...(log ? { log } : {}) },
      { durable: wallSeconds >= DURABLE_REPORT_SECONDS, artifacts: report.artifacts },
    );
  }

  async isFinished(): Promise<boolean> {
    return !this.options.stay && this.lastDone;
  }

  /**
   * Tells the coordinator this agent exits cleanly, so it shows `exited`, not lost, once its
   * channel closes. Best effort: a coordinator that does not hear it marks the agent lost, which
   * costs nothing but the word.
   */
  async goodbye(): Promise<void> {
    try {
      await this.client.call(
        "POST",
        "/goodbye",
        { agentId: this.options.agentId },
        { retries: 0, timeoutMs: 3000 },
      );
    } catch (error) {
      this.contact.noteFatal(error);
    }
  }

  /** The coordinator judges what fits this agent (`done`), so nothing is ever stuck here. */
  async claimableCount(): Promise<number> {
    return 0;
  }

  /** Sends one live chunk of a running task's log; one try (the next tick sends it again). */
  async sendLog(attemptId: number, offset: number, text: string): Promise<ChunkVerdict> {
    try {
      await this.client.call(
        "POST",
        `/attempts/${attemptId}/log`,
        { agentId: this.options.agentId, offset, text },
        { retries: 0, timeoutMs: 10_000 },
      );
      return "ok";
    } catch (error) {
      this.contact.noteFatal(error);
      if (error instanceof HttpError) return error.status === 413 ? "too-large" : "stop";
      throw error;
    }
  }

  /** Sends one outbox record (see deliverReport). */
  deliver(record: OutboxRecord, signal: AbortSignal): Promise<"sent" | { refused: string }> {
    return deliverReport(this.client, this.contact, record, signal, {
      dir: this.options.outbox.artifactsDir(record.attemptId),
      warn: (message) => this.warn(message),
    });
  }

  /** Runs a request; a coordinator that forgot this agent (it restarted) gets it registered again. */
  private async withRegistration<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await this.contact.guard(call);
    } catch (error) {
      if (!(error instanceof HttpError && error.code === "unknown_agent" && this.capabilities)) throw error;
      await this.register(this.capabilities);
      return this.contact.guard(call);
    }
  }
}
