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
  started(attemptId: number, pid: number, logPath: string): Promise<void>;
  finish(attemptId: number, report: { outcome: AttemptOutcome; logTail?: string }): Promise<unknown>;
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
