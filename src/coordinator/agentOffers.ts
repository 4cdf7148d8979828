import { allocate, type Capacity, consume } from "../protocol/capacity.js";
import type { Lease } from "../protocol/interfaces.js";
import type { AgentOffer } from "../protocol/offers.js";

/**
 * What each working agent offers new tasks now, as far as this coordinator knows: the capacity
 * it last asked for work with, less the tasks it was given for it. Kept in memory only — a
 * write per lease would cost the ledger more than `labsweep explain` is worth — and forgotten
 * when the agent leaves, so it names only agents that are there. An agent whose slots are all
 * busy asks for nothing: its last offer (no free slot) stands until a task of it ends.
 */
export class AgentOffers {
  private readonly offers = new Map<string, AgentOffer>();

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * An agent asked for work with `capacity` and was given `leases`. A lease asked for ahead of a
   * slot's freeing (waitMs 0, `agent/leaseAhead.ts`) offers what a running task will free, not
   * what is free: the caller leaves those out.
   */
  record(
    agent: { agentId: string; name: string; host: string },
    capacity: Capacity,
    leases: readonly Lease[] = [],
  ): void {
    let left = capacity;
    for (const lease of leases) {
      const resources = lease.task.policy.resources;
      // The coordinator placed it on these GPUs; `allocate` only for leases that carry none.
      const gpuIds = lease.gpuIds.length > 0 ? lease.gpuIds : (allocate(resources, left)?.gpuIds ?? []);
      left = consume(left, resources, gpuIds);
    }
    this.offers.set(agent.agentId, { ...agent, capacity: left, at: this.now() });
  }

  /** The agent left (goodbye, lost, or its run ended). */
  forget(agentId: string): void {
    this.offers.delete(agentId);
  }

  /** Every known offer, oldest agent first. */
  list(): AgentOffer[] {
    return [...this.offers.values()];
  }
}
