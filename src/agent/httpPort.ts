import type {
  AgentCapabilities,
  FinishResponse,
  HeartbeatResponse,
  LeasedTask,
  LeaseResponse,
  RegisterResponse,
} from "../api/contract.js";
import type { Claim } from "../ledger/claimTask.js";
import type { AttemptOutcome } from "../ledger/finishAttempt.js";
import type { Params, RunPolicy } from "../sweep/types.js";
import type { CoordinatorPort } from "./agent.js";
import type { Capacity } from "./capacity.js";
import { type CoordinatorClient, HttpError, isAbort, UnauthorizedError } from "./httpClient.js";
import { type ChunkVerdict, logPieces } from "./logStream.js";
import type { Outbox, OutboxRecord } from "./outbox.js";

export { CoordinatorClient, HttpError, UnauthorizedError } from "./httpClient.js";

/** The final log goes in pieces of at most this many bytes (the coordinator caps request bodies). */
const FINAL_LOG_PIECE_BYTES = 128 * 1024;

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
}

/**
 * The `CoordinatorPort` over HTTP (`/api/v1`, see api/contract.ts). Leases long-poll: an idle
 * agent's request waits at the coordinator and gets a task the moment one fits. While the
 * coordinator is unreachable, leasing waits and retries (the client's backoff and failover) and
 * running tasks go on; their reports wait in the outbox. Heartbeats and task-start notices are
 * best-effort (a missed one is followed by the next); a 401 anywhere is fatal (`onFatal`).
 */
export class HttpPort implements CoordinatorPort {
  private capabilities: AgentCapabilities | null = null;
  private lastDone = false;
  /** Whether the last lease waited out its time at the coordinator without a task. */
  private lastWaited = false;
  private heartbeating = false;
  private wake: (() => void) | null = null;
  private fatal = false;

  constructor(
    private readonly client: CoordinatorClient,
    private readonly options: HttpPortOptions,
  ) {}

  /** `POST /agents`, retried until the coordinator answers; returns its lease settings. */
  async register(capabilities: AgentCapabilities, signal?: AbortSignal): Promise<RegisterResponse> {
    this.capabilities = capabilities;
    return this.guard(() => this.client.call<RegisterResponse>("POST", "/agents", capabilities, { signal }));
  }

  async lease(request: { capacity: Capacity; signal?: AbortSignal }): Promise<Claim | null> {
    const waitMs =
      request.capacity.freeSlots < this.options.slots
        ? (this.options.busyWaitMs ?? 2000)
        : (this.options.idleWaitMs ?? 25_000);
    // JSON has no Infinity: "no CPU limit" travels as null (the coordinator reads it so).
    const body = { agentId: this.options.agentId, capacity: request.capacity, waitMs };
    this.lastWaited = false;
    // After an outage, the coordinator hears what finished before it is asked for more: a task
    // it requeued meanwhile is then marked done instead of being handed out again.
    // A report the coordinator keeps failing (5xx) holds leasing up for a while, not for ever.
    if (this.options.outbox.pending().length > 0)
      await this.options.outbox.flush({ signal: request.signal, timeoutMs: 30_000 });
    const started = Date.now();
    try {
      const response = await this.withRegistration(() =>
        this.client.call<LeaseResponse>("POST", "/lease", body, {
          timeoutMs: waitMs + 15_000,
          signal: request.signal,
        }),
      );
      this.lastDone = response.done === true;
      // A lease answered "nothing" early is not a wait; polling again at once would spin.
      this.lastWaited = !response.lease && !response.done && Date.now() - started >= waitMs / 2;
      return response.lease ? toClaim(response.lease) : null;
    } catch (error) {
      if (request.signal?.aborted && isAbort(error)) return null;
      throw error;
    }
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

  /**
   * Renews the leases of running tasks and of finished ones whose reports are still in the
   * outbox, so the coordinator does not requeue a task whose report is on its way. Returns the
   * stale attempts among `attemptIds`; [] when the coordinator cannot be reached.
   */
  async heartbeat(attemptIds: number[]): Promise<number[]> {
    if (this.heartbeating) return [];
    this.heartbeating = true;
    const asked = new Set(attemptIds);
    const ids = [...new Set([...attemptIds, ...this.options.outbox.pending()])];
    try {
      const response = await this.withRegistration(() =>
        this.client.call<HeartbeatResponse>(
          "POST",
          "/heartbeat",
          { agentId: this.options.agentId, attemptIds: ids },
          { retries: 0, timeoutMs: this.options.heartbeatTimeoutMs ?? 3000 },
        ),
      );
      return response.stale.filter((id) => asked.has(id));
    } catch (error) {
      this.noteFatal(error);
      return []; // unreachable: the next heartbeat tries again
    } finally {
      this.heartbeating = false;
    }
  }

  /** Tells the coordinator the task's pid (for display); a few tries, never fails the task. */
  async started(attemptId: number, pid: number, _logPath: string): Promise<void> {
    void this.client
      .call("POST", `/attempts/${attemptId}/started`, { agentId: this.options.agentId, pid }, { retries: 3 })
      .catch((error) => this.noteFatal(error));
  }

  /** Writes the report to the outbox (durably) and returns; it is sent from there. */
  async finish(
    attemptId: number,
    report: { outcome: AttemptOutcome; logTail?: string },
    log?: OutboxRecord["log"],
  ): Promise<void> {
    const request = { agentId: this.options.agentId, outcome: report.outcome, logTail: report.logTail };
    await this.options.outbox.put({ attemptId, request, ...(log ? { log } : {}) });
  }

  async isFinished(): Promise<boolean> {
    return !this.options.stay && this.lastDone;
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
      this.noteFatal(error);
      if (error instanceof HttpError) return error.status === 413 ? "too-large" : "stop";
      throw error;
    }
  }

  /**
   * Sends one outbox record: the log's unsent end, then the report. Network errors and 5xx are
   * retried until `signal` aborts; a 2xx (accepted, or already recorded) is "sent".
   */
  async deliver(record: OutboxRecord, signal: AbortSignal): Promise<"sent" | { refused: string }> {
    const path = `/attempts/${record.attemptId}`;
    // The log's end first, in pieces a request may carry; it is a courtesy, the report matters.
    for (const piece of record.log ? logPieces(record.log, FINAL_LOG_PIECE_BYTES) : []) {
      const chunk = { agentId: record.request.agentId, ...piece };
      try {
        await this.guard(() => this.client.call("POST", `${path}/log`, chunk, { signal }));
      } catch (error) {
        if (!(error instanceof HttpError)) throw error;
        break;
      }
    }
    let request = record.request;
    for (;;) {
      try {
        await this.guard(() =>
          this.client.call<FinishResponse>("POST", `${path}/finish`, request, { signal }),
        );
        return "sent";
      } catch (error) {
        if (!(error instanceof HttpError)) throw error;
        if (error.status === 413 && request.logTail) {
          // Too large: a shorter tail, then none.
          const tail = request.logTail;
          request = { ...request, logTail: tail.length > 4096 ? tail.slice(-4096) : undefined };
          continue;
        }
        return { refused: `${error.status}: ${error.detail}` };
      }
    }
  }

  /** Runs a request; a coordinator that forgot this agent (it restarted) gets it registered again. */
  private async withRegistration<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await this.guard(call);
    } catch (error) {
      if (!(error instanceof HttpError && isUnknownAgent(error) && this.capabilities)) throw error;
      await this.register(this.capabilities);
      return this.guard(call);
    }
  }

  private async guard<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      this.noteFatal(error);
      throw error;
    }
  }

  private noteFatal(error: unknown): void {
    if (!(error instanceof UnauthorizedError) || this.fatal) return;
    this.fatal = true;
    this.options.onFatal?.(error);
  }
}

/** The coordinator answers 409 "unknown agent …" to an agent it has no registration of. */
function isUnknownAgent(error: HttpError): boolean {
  return (error.status === 409 || error.status === 404) && /unknown agent/i.test(error.detail);
}

function toClaim(lease: LeasedTask): Claim {
  return {
    attemptId: lease.attemptId,
    attemptNumber: lease.attemptNumber,
    gpuIds: lease.gpuIds,
    placements: lease.placements,
    task: {
      id: lease.task.id,
      signature: lease.task.signature,
      params: lease.task.params as Params,
      command: lease.task.command,
      cwd: lease.task.cwd,
      configFile: lease.task.configFile,
      policy: lease.task.policy as RunPolicy,
      state: "running",
      attempts: lease.attemptNumber,
    },
  };
}
