/**
 * `shortfall`: which resource a task needs that no agent's offer has, and the best offered of it
 * and where — the words `labsweep explain` prints. Pure: offers are plain data.
 */
import { describe, expect, it } from "vitest";
import type { Capacity, GpuOffer } from "../src/protocol/capacity.js";
import { type AgentOffer, shortfall } from "../src/protocol/offers.js";
import type { Resources } from "../src/sweep/types.js";

function resources(overrides: Partial<Resources> = {}): Resources {
  return { gpus: null, gpuMemoryGb: 0, cpus: 1, tags: [], ...overrides };
}

function gpu(index: number, freeMemoryMiB: number | null = 16_384, freeShare = 1): GpuOffer {
  return { index, freeShare, freeMemoryMiB };
}

function offer(host: string, overrides: Partial<Capacity> = {}, name = host): AgentOffer {
  const gpus = overrides.gpus ?? [];
  return {
    agentId: `id-${host}`,
    name,
    host,
    at: 0,
    capacity: { freeSlots: 2, freeCpus: 8, gpus, hasGpus: gpus.length > 0, tags: [], ...overrides },
  };
}

describe("shortfall", () => {
  it("is null when some offer fits now", () => {
    const offers = [offer("a", { gpus: [gpu(0, 4096)] }), offer("b", { gpus: [gpu(0, 30_000)] })];
    expect(shortfall(resources({ gpus: 1, gpuMemoryGb: 24 }), offers)).toBeNull();
  });

  it("names the time a task's timeout needs when every agent's allocation ends sooner", () => {
    const offers = [offer("a", { timeLeftMs: 20 * 60_000 }), offer("b", { timeLeftMs: 45 * 60_000 })];
    expect(shortfall(resources(), offers, "now", 2 * 3_600_000)).toEqual({
      resource: "time",
      need: "needs 120 min before its allocation ends (its timeout)",
      best: "most time left now: 45 min on host b",
    });
    // Time enough on one of them, or no timeout, or an agent outside any allocation: it fits.
    expect(shortfall(resources(), offers, "now", 30 * 60_000)).toBeNull();
    expect(shortfall(resources(), offers, "now", null)).toBeNull();
    expect(shortfall(resources(), [...offers, offer("c")], "now", 2 * 3_600_000)).toBeNull();
  });

  it("names the GPU memory needed and the largest free, and where", () => {
    const offers = [
      offer("a", { gpus: [gpu(0, 4096), gpu(1, 8192)] }),
      offer("b", { gpus: [gpu(0, 11_776)] }),
    ];
    expect(shortfall(resources({ gpus: 1, gpuMemoryGb: 24 }), offers)).toEqual({
      resource: "gpu_memory",
      need: "needs 24 GB free GPU memory",
      best: "largest free now: 11.5 GB on host b",
    });
    // Two GPUs: the second roomiest GPU of each agent is what counts.
    expect(shortfall(resources({ gpus: 2, gpuMemoryGb: 6 }), offers)).toMatchObject({
      need: "needs 6 GB free GPU memory on each of 2 GPUs",
      best: "best now: 4 GB on host a",
    });
  });

  it("checks tags, GPU count, slots and CPUs first, each among the offers left", () => {
    const a = offer("a", { tags: ["a100"], gpus: [gpu(0)] }, "gpu-a");
    const b = offer("b", { gpus: [gpu(0), gpu(1)], freeCpus: 2 });
    expect(shortfall(resources({ tags: ["h100"] }), [a, b])).toEqual({
      resource: "tags",
      need: "needs tag h100",
      best: "connected agents offer a100 (gpu-a (host a)); none (host b)",
    });
    expect(shortfall(resources({ gpus: 4 }), [a, b])).toMatchObject({
      resource: "gpus",
      need: "needs 4 GPUs",
      best: "most on one agent: 2 on host b",
    });
    expect(shortfall(resources({ gpus: 2, cpus: 4 }), [a, b])).toMatchObject({
      resource: "cpus",
      need: "needs 4 CPUs",
      best: "most free now: 2 on host b",
    });
    const busy = offer("c", { freeSlots: 0, gpus: [gpu(0)] });
    expect(shortfall(resources(), [busy], "at registration")).toMatchObject({
      resource: "slots",
      best: "every slot is busy at registration (1 agent)",
    });
  });

  it("says how much of a GPU is left when a fraction or a whole idle GPU is wanted", () => {
    const shared = offer("a", { gpus: [gpu(0, 16_384, 0.25), gpu(1, 16_384, 0.5)] });
    expect(shortfall(resources({ gpus: 0.75 }), [shared])).toEqual({
      resource: "gpu_share",
      need: "needs 0.75 of a GPU",
      best: "largest share left now: 0.5 on host a",
    });
    expect(shortfall(resources({ gpus: 1 }), [shared])).toMatchObject({
      need: "needs 1 GPU no task holds",
      best: "most idle GPUs now: 0 on host a",
    });
  });

  it("says no agent is connected when there is no offer", () => {
    expect(shortfall(resources(), [])).toMatchObject({ best: "no agent is connected" });
  });
});
