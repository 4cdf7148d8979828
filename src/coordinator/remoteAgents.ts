import { getAgent, markAgentExited, markAgentLost, registerAgent, touchAgent } from "../ledger/agents.js";
import type { FinishResult } from "../ledger/finishAttempt.js";
import type { FinishRefusal } from "../ledger/finishAttempts.js";
import { type UnfinishedPhase, unfinishedPhases } from "../ledger/reads/unfinished.js";
import { openAttempts } from "../ledger/recoverAbandoned.js";
import type { AttemptRow } from "../ledger/rows.js";
import { type Capacity, whyNoFit, whyNoTime } from "../protocol/capacity.js";
import type { AgentCapabilities } from "../protocol/http.js";
import type { Lease } from "../protocol/interfaces.js";
import type { RunPolicy } from "../sweep/types.js";
import type { Coordinator, ReportItem } from "./coordinator.js";
import type { Notifications } from "./notifications.js";

export interface RemoteAgentsOptions {
  /** Running tasks of an agent whose connection dropped wait this long for it to come back. (Default: 2 s) */
  disconnectGraceMs?: number;
  /** How often expired leases are looked for. (Default: 1 s) */
  sweepEveryMs?: number;
  now?: () => number;
  /** Reports requeues and lost agents (for logs). (Default: none) */
  onEvent?: (message: string) => void;
  /** The sweep's notifications: a lost agent is recorded in the transaction that marks it. (Default: none) */
  notifications?: Notifications;
}

/** How often a waiting lease asks again whether anything left could still fit its agent. */
const RECHECK_MS = 2000;

/**
 * The coordinator's view of networked agents: registration, long-poll leases, heartbeats, and
 * noticing dead agents — at once when their persistent connection closes (after a short grace
 * for a network blip), and by lease expiry when a host vanishes silently.
 */
export class RemoteAgents {
  private readonly capabilities = new Map<string, AgentCapabilities>();
  private readonly channels = new Map<string, Set<(event: object) => void>>();
  private readonly graceTimers = new Map<string, NodeJS.Timeout>();
  private readonly touchedAt = new Map<string, number>();
  /** When each agent last asked for anything (lease, heartbeat, a report): who sayDone waits for. */
  private readonly heardAt = new Map<string, number>();
  /** Agents that said goodbye: their channel closing next is their exit, not a loss. */
  private readonly leaving = new Set<string>();
  /** Agents waiting in a lease for work that fits, with their free slots (the SLURM allocator's supply). */
  private readonly waiting = new Map<string, number>();
  private policyCache: { at: number; rows: UnfinishedPhase[] } | null = null;
  private readonly sweeper: NodeJS.Timeout;
  private readonly now: () => number;
  private readonly graceMs: number;
  /** Background work (lease sweeps, lost agents), awaited by close() so none outlives the ledger. */
  private readonly inflight = new Set<Promise<void>>();
  private closed = false;

  constructor(
    private readonly coordinator: Coordinator,
    private readonly options: RemoteAgentsOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.graceMs = options.disconnectGraceMs ?? 2000;
    this.sweeper = setInterval(
      () => this.background(() => this.expireLeases()),
      options.sweepEveryMs ?? 1000,
    );
    this.sweeper.unref();
  }

  /** Stops the timers and waits for background work still running. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const timer of this.graceTimers.values()) clearTimeout(timer);
    this.graceTimers.clear();
    await Promise.all(this.inflight);
  }

  /**
   * Runs work off the request path. A failure (a busy or closed ledger) is reported, never left
   * as an unhandled rejection, which would end the coordinator's process.
   */
  private background(work: () => Promise<unknown>): void {
    if (this.closed) return;
    const running: Promise<void> = work()
      .then(() => undefined)
      .catch((error: unknown) => {
        this.options.onEvent?.(
          `background work failed: ${error instanceof Error ? error.message : String(error)}`,
        );
      })
      .finally(() => this.inflight.delete(running));
    this.inflight.add(running);
  }

  async register(info: AgentCapabilities): Promise<number[]> {
    this.capabilities.set(info.agentId, info);
    this.leaving.delete(info.agentId);
    await registerAgent(
      this.coordinator.db,
      { id: info.agentId, name: info.name, host: info.host, info },
      this.now(),
    );
    const open = await openAttempts(this.coordinator.db, { worker: info.agentId });
    return open.map((attempt) => attempt.id);
  }

  /** The agent's capabilities, from memory or (after a coordinator restart) the ledger. */
  async known(agentId: string): Promise<AgentCapabilities | null> {
    const cached = this.capabilities.get(agentId);
    if (cached) return cached;
    const row = await getAgent(this.coordinator.db, agentId);
    if (!row) return null;
    const info = JSON.parse(row.info_json) as AgentCapabilities;
    this.capabilities.set(agentId, info);
    return info;
  }

  /**
   * Holds the request until tasks fit the agent's capacity (up to `max` of them), the sweep has
   * nothing left for it, or `waitMs` passes. `gone()` says the agent hung up: tasks claimed after
   * that are handed straight back. The agent's `reports` are recorded first, in the transaction
   * of the first lease (Coordinator.reportAndLease); `results` are theirs, in order.
   */
  async lease(
    agentId: string,
    capacity: Capacity,
    waitMs: number,
    gone: () => boolean,
    max = 1,
    reports: ReportItem[] = [],
  ): Promise<{
    leases: Lease[];
    done: boolean;
    results: Array<FinishResult | FinishRefusal>;
    /** With `done`: why unfinished tasks fit nowhere on this agent, per phase. */
    unfit?: string[];
  }> {
    const info = await this.known(agentId);
    if (!info) {
      // Recorded all the same: the agent's attempts may be in the ledger though it is not known.
      if (reports.length > 0) await this.coordinator.reportAndLease(reports, null, 0);
      throw new UnknownAgentError(agentId);
    }
    await this.touch(agentId);
    const deadline = this.now() + Math.min(waitMs, 60_000);
    let unreported = reports;
    let results: Array<FinishResult | FinishRefusal> = [];
    for (;;) {
      const leasing = !gone() && max >= 1;
      if (!leasing && unreported.length === 0) return { leases: [], done: false, results };
      const round = await this.coordinator.reportAndLease(
        unreported,
        leasing ? { worker: agentId, host: info.host, capacity } : null,
        max,
      );
      if (unreported.length > 0) {
        results = round.results;
        unreported = [];
      }
      if (!leasing) return { leases: [], done: false, results };
      const leases = round.leases;
      // A lease asked for ahead (waitMs 0) offers what a running task will free, not what is free.
      if (waitMs > 0)
        this.coordinator.offers.record({ agentId, name: info.name, host: info.host }, capacity, leases);
      if (leases.length > 0) {
        if (gone()) {
          const outcome = {
            kind: "interrupted" as const,
            error: "the agent hung up before the lease reached it",
          };
          await this.coordinator.finishMany(
            leases.map(({ attemptId }) => ({ attemptId, report: { outcome } })),
          );
          return { leases: [], done: false, results };
        }
        this.waiting.delete(agentId);
        return { leases: leases, done: false, results };
      }
      const unfit = await this.nothingLeftFor(info, capacity.timeLeftMs ?? null);
      if (unfit) return { leases: [], done: true, results, unfit };
      const remaining = deadline - this.now();
      if (remaining <= 0) return { leases: [], done: false, results };
      this.waiting.set(agentId, capacity.freeSlots);
      // Judged again every few seconds: tasks ending elsewhere may leave only what cannot fit here
      // (too big, or longer than its allocation has left), and the agent should hear it is done.
      await this.coordinator.awaitWork(Math.min(remaining, RECHECK_MS));
    }
  }

  /** Records that an agent was heard from, at most once a second (a write per lease would be waste). */
  private async touch(agentId: string): Promise<void> {
    const now = this.now();
    this.heardAt.set(agentId, now);
    if (now - (this.touchedAt.get(agentId) ?? 0) < 1000) return;
    this.touchedAt.set(agentId, now);
    await touchAgent(this.coordinator.db, agentId, now);
  }

  async heartbeat(agentId: string, attemptIds: number[]): Promise<number[]> {
    if (!(await touchAgent(this.coordinator.db, agentId, this.now()))) throw new UnknownAgentError(agentId);
    this.heard(agentId);
    // Only the agent's own attempts are renewed: an id it names that is another agent's (a
    // coordinator that started over with a fresh ledger reuses ids) is stale for this agent.
    const own = new Set((await openAttempts(this.coordinator.db, { worker: agentId })).map((a) => a.id));
    const foreign = attemptIds.filter((id) => !own.has(id));
    const stale = await this.coordinator.heartbeat(attemptIds.filter((id) => own.has(id)));
    return [...foreign, ...stale];
  }

  /**
   * The agent exits cleanly: it is `exited` from now on, and its channel closing is no loss. Any
   * attempt it still holds (a report it could not send stays in its outbox) is requeued when
   * its lease runs out, as for any silent agent.
   */
  async goodbye(agentId: string): Promise<void> {
    if (!(await markAgentExited(this.coordinator.db, agentId, this.now())))
      throw new UnknownAgentError(agentId);
    this.coordinator.offers.forget(agentId);
    this.leaving.add(agentId);
    const timer = this.graceTimers.get(agentId);
    if (timer) clearTimeout(timer);
    this.graceTimers.delete(agentId);
  }

  /** A persistent connection opened; `send` pushes events to it. Returns the close handler. */
  connect(agentId: string, send: (event: object) => void): () => void {
    const timer = this.graceTimers.get(agentId);
    if (timer) {
      clearTimeout(timer);
      this.graceTimers.delete(agentId);
    }
    const listeners = this.channels.get(agentId) ?? new Set();
    listeners.add(send);
    this.channels.set(agentId, listeners);
    this.background(() => touchAgent(this.coordinator.db, agentId, this.now()));
    return () => {
      listeners.delete(send);
      if (listeners.size > 0) return;
      this.channels.delete(agentId);
      this.waiting.delete(agentId);
      if (this.closed) return; // the coordinator is shutting down: its agents are not lost
      if (this.leaving.has(agentId)) return; // it said goodbye: exited, not lost
      this.background(() => touchAgent(this.coordinator.db, agentId, this.now(), "disconnected"));
      // A blip gets a grace period to reconnect; after it the agent's tasks run elsewhere.
      this.graceTimers.set(
        agentId,
        setTimeout(() => {
          this.graceTimers.delete(agentId);
          this.background(() => this.agentLost(agentId, "connection closed"));
        }, this.graceMs),
      );
    };
  }

  /**
   * Tells every connected agent the sweep is done, then waits until they have hung up or
   * `graceMs` passed: a coordinator about to exit (`--exit-when-done`) lets its agents hear it
   * rather than find it gone and wait for it to come back.
   */
  async sayDone(graceMs: number): Promise<void> {
    for (const agentId of this.channels.keys()) this.push(agentId, { type: "done" });
    const deadline = Date.now() + graceMs;
    // An agent whose channel was reconnecting hears "done" in its next lease's answer instead:
    // waited for too, until its goodbye, else it would outlive the coordinator retrying.
    while ((this.channels.size > 0 || this.stillHere()) && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 25));
  }

  /**
   * A known agent sent something (a heartbeat, a task's report or log): it is alive, and a
   * finishing coordinator waits for it to hear "done".
   */
  heard(agentId: string): void {
    this.heardAt.set(agentId, this.now());
  }

  /** Some agent was heard from in the last lease period and has not said goodbye. */
  private stillHere(): boolean {
    const now = this.now();
    for (const [agentId, at] of this.heardAt)
      if (now - at < this.coordinator.leaseMs && !this.leaving.has(agentId)) return true;
    return false;
  }

  /**
   * What the SLURM allocator counts as supply: free slots of connected agents waiting for work,
   * and the job array elements (`JOBID_INDEX`) whose agents are connected.
   */
  slurmView(): { idleSlots: number; connected: Set<string> } {
    let idleSlots = 0;
    for (const [agentId, slots] of this.waiting) if (this.channels.has(agentId)) idleSlots += slots;
    const connected = new Set<string>();
    for (const agentId of this.channels.keys()) {
      const slurm = this.capabilities.get(agentId)?.slurm;
      if (slurm)
        connected.add(slurm.arrayTaskId === null ? slurm.jobId : `${slurm.jobId}_${slurm.arrayTaskId}`);
    }
    return { idleSlots, connected };
  }

  /** Pushes an event to an agent's open connections, if it has any. */
  push(agentId: string, event: object): void {
    for (const send of this.channels.get(agentId) ?? []) send(event);
  }

  private async agentLost(agentId: string, reason: string): Promise<void> {
    // Lost: no goodbye will come.
    this.touchedAt.delete(agentId);
    this.heardAt.delete(agentId);
    this.coordinator.offers.forget(agentId);
    const open = await openAttempts(this.coordinator.db, { worker: agentId });
    const now = this.now();
    await this.coordinator.db.transaction(async (tx) => {
      const agent = await getAgent(tx, agentId);
      await markAgentLost(tx, agentId, reason, now);
      // Once per loss: an agent already lost (or gone with a goodbye) is not lost again.
      if (agent && agent.state !== "lost" && agent.state !== "exited")
        await this.options.notifications?.recordAgentLost(tx, agent, reason, now);
    });
    this.options.notifications?.poke();
    const requeued = await this.coordinator.requeueLost(
      open.map((attempt) => attempt.id),
      `agent lost: ${reason}`,
    );
    if (requeued > 0)
      this.options.onEvent?.(`agent ${agentId} lost (${reason}): ${requeued} task(s) requeued`);
  }

  /** Leases not renewed in time: the host vanished silently (power loss, partition). */
  private async expireLeases(): Promise<void> {
    const now = this.now();
    const expired = await openAttempts(this.coordinator.db, { expiredBy: now });
    const byAgent = new Map<string, AttemptRow[]>();
    for (const attempt of expired)
      byAgent.set(attempt.worker, [...(byAgent.get(attempt.worker) ?? []), attempt]);
    for (const [agentId, attempts] of byAgent) {
      const agent = await getAgent(this.coordinator.db, agentId);
      if (!agent) continue;
      if (agent.state !== "lost" && now - agent.last_seen < this.coordinator.leaseMs) {
        // The agent is still heard from (it heartbeats) but did not renew these: it never got
        // them (a lease answer lost on the way) or their tasks were cancelled. Requeue just these;
        // its other tasks run on.
        const requeued = await this.coordinator.requeueLost(
          attempts.map((attempt) => attempt.id),
          "lease expired: its agent did not renew it",
        );
        if (requeued > 0)
          this.options.onEvent?.(`agent ${agentId} did not renew ${requeued} lease(s): requeued`);
        continue;
      }
      await this.agentLost(agentId, "lease expired");
    }
  }

  /** Run policies of unfinished tasks, per phase; a scan, so reused for a second across idle agents. */
  private async unfinishedPolicies(): Promise<UnfinishedPhase[]> {
    const now = this.now();
    if (this.policyCache && now - this.policyCache.at < 1000) return this.policyCache.rows;
    const rows = await unfinishedPhases(this.coordinator.db);
    this.policyCache = { at: now, rows };
    return rows;
  }

  /**
   * Null while some unfinished task could fit this agent; else why none can, per phase ([] when
   * the sweep is finished).
   */
  private async nothingLeftFor(info: AgentCapabilities, timeLeftMs: number | null): Promise<string[] | null> {
    if (await this.coordinator.isFinished()) return [];
    const policies = await this.unfinishedPolicies();
    const idle: Capacity = {
      freeSlots: info.slots,
      freeCpus: Number.POSITIVE_INFINITY,
      hasGpus: info.gpus.length > 0,
      tags: info.tags ?? [],
      // Total, not free, memory: memory other processes hold now may be free later.
      gpus: info.gpus.map((gpu) => ({
        index: gpu.index,
        freeShare: 1,
        freeMemoryMiB: gpu.memoryTotalMiB ?? gpu.memoryFreeMiB ?? null,
      })),
      timeLeftMs,
    };
    const unfit: string[] = [];
    for (const row of policies) {
      const policy = JSON.parse(row.policy_json) as RunPolicy;
      // An allocation too short for a phase's timeout is done with it: its end frees the nodes.
      const why = whyNoFit(policy.resources, idle, true) ?? whyNoTime(policy.timeoutMs, idle);
      if (why === null) return null;
      unfit.push(`phase ${row.phase} (${Number(row.n)} tasks): ${why}`);
    }
    return unfit;
  }
}

/** A request named an agent that never registered (or a coordinator forgot it): register again. */
export class UnknownAgentError extends Error {
  override readonly name = "UnknownAgentError";
  constructor(agentId: string) {
    super(`unknown agent ${agentId}: register first (POST /agents)`);
  }
}
