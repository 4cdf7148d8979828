import type { CollectedArtifacts } from "../protocol/artifacts.js";
import type { Capacity } from "../protocol/capacity.js";
import type { AttemptOutcome, AttemptPoints, Lease } from "../protocol/interfaces.js";

/** What an agent needs from a coordinator: in-process for `labsweep run`, over HTTP otherwise. */
export interface CoordinatorPort {
  /** `signal` aborts a lease still waiting (long-poll) when the agent stops: it resolves null. */
  /** Up to `max` tasks that fit `capacity` together; [] when none fits now. */
  lease(request: {
    /** The agent asking (the ledger records it as the attempt's `worker`). */
    agentId: string;
    host: string;
    capacity: Capacity;
    max: number;
    /** How long the coordinator may hold the request for work. (Default: the port decides) */
    waitMs?: number;
    signal?: AbortSignal;
  }): Promise<Lease[]>;
  awaitWork(maxWaitMs: number): Promise<void>;
  /** Renews leases; returns the attempts that are no longer this agent's: the agent stops them. */
  heartbeat(attemptIds: number[]): Promise<number[]>;
  /**
   * Reports written but not yet taken (a remote agent's outbox, artifacts still uploading): their
   * attempts' leases are renewed too, so a long upload is not taken for a lost agent. (Default: 0)
   */
  unsentReports?(): number;
  started(attemptId: number, pid: number, logPath: string): Promise<void>;
  /**
   * Reports how an attempt ended. A success's `artifacts` are the port's once this resolves
   * (moved to the outbox, or stored): the agent may delete their dir.
   */
  finish(
    attemptId: number,
    report: { outcome: AttemptOutcome; logTail?: string; artifacts?: CollectedArtifacts },
  ): Promise<unknown>;
  /**
   * Stores live points (agent/pointRelay.ts); resolves once stored, rejects if they were not.
   * (Default: none — points stay in the attempts' events files)
   */
  points?(batches: AttemptPoints[]): Promise<unknown>;
  /** True when the sweep has nothing left that could ever run. */
  isFinished(): Promise<boolean>;
  /** Tasks claimable right now (not waiting for a backoff or a gate). */
  claimableCount(): Promise<number>;
}
