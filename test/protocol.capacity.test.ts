/** Matching a task's resources to what an agent offers: tags, GPU fractions, GPU memory, CPUs. */
import { describe, expect, it } from "vitest";
import {
  allocate,
  type Capacity,
  couldEverFit,
  type GpuOffer,
  memoryForNewTask,
  tagsFit,
  whyNoFit,
} from "../src/protocol/capacity.js";
import type { Resources } from "../src/sweep/types.js";

function resources(overrides: Partial<Resources> = {}): Resources {
  return { gpus: null, gpuMemoryGb: 0, cpus: 1, tags: [], ...overrides };
}

function gpu(index: number, freeMemoryMiB: number | null = 16_384, freeShare = 1): GpuOffer {
  return { index, freeShare, freeMemoryMiB };
}

function capacity(overrides: Partial<Capacity> = {}): Capacity {
  const gpus = overrides.gpus ?? [];
  return {
    freeSlots: 4,
    freeCpus: Number.POSITIVE_INFINITY,
    gpus,
    hasGpus: gpus.length > 0,
    tags: [],
    ...overrides,
  };
}

/** Allocates like an agent does: takes the GPU shares it was given, one task after another. */
function place(task: Resources, offer: Capacity): number[] | null {
  const allocation = allocate(task, offer);
  if (!allocation) return null;
  const share = Math.min(task.gpus ?? (offer.hasGpus ? 1 : 0), 1);
  for (const index of allocation.gpuIds) {
    const found = offer.gpus.find((g) => g.index === index);
    if (found) found.freeShare -= share;
  }
  offer.freeSlots -= 1;
  return allocation.gpuIds;
}

describe("tags", () => {
  it("an untagged task fits any agent, tagged or not", () => {
    expect(allocate(resources(), capacity())).toEqual({ gpuIds: [] });
    expect(allocate(resources(), capacity({ tags: ["big"] }))).toEqual({ gpuIds: [] });
  });

  it("a tagged task fits only an agent offering every one of its tags", () => {
    const task = resources({ tags: ["big", "a100"] });
    expect(allocate(task, capacity())).toBeNull();
    expect(allocate(task, capacity({ tags: ["big"] }))).toBeNull();
    expect(allocate(task, capacity({ tags: ["a100"] }))).toBeNull();
    expect(allocate(task, capacity({ tags: ["a100", "big"] }))).toEqual({ gpuIds: [] });
    expect(allocate(task, capacity({ tags: ["spot", "big", "a100"] }))).toEqual({ gpuIds: [] });
  });

  it("tags are matched exactly (case and whole words)", () => {
    expect(allocate(resources({ tags: ["big"] }), capacity({ tags: ["BIG"] }))).toBeNull();
    expect(allocate(resources({ tags: ["big"] }), capacity({ tags: ["bigger"] }))).toBeNull();
  });

  it("tags come on top of the other resources: the right tag does not make room", () => {
    const task = resources({ gpus: 1, tags: ["big"] });
    expect(allocate(task, capacity({ tags: ["big"] }))).toBeNull(); // no GPU
    expect(allocate(task, capacity({ tags: ["big"], gpus: [gpu(0)], freeSlots: 0 }))).toBeNull();
    expect(allocate(task, capacity({ tags: ["big"], gpus: [gpu(0)] }))).toEqual({ gpuIds: [0] });
    expect(allocate(task, capacity({ gpus: [gpu(0)] }))).toBeNull();
  });

  it("a policy stored before tags existed (no field) asks for none", () => {
    const legacy = { gpus: 0, gpuMemoryGb: 0, cpus: 1 } as unknown as Resources;
    expect(tagsFit(legacy, [])).toBe(true);
    expect(allocate(legacy, capacity())).toEqual({ gpuIds: [] });
  });

  it("an agent without the tag could never run the task, even idle", () => {
    const task = resources({ tags: ["big"] });
    expect(couldEverFit(task, capacity())).toBe(false);
    expect(couldEverFit(task, capacity({ tags: ["big"] }))).toBe(true);
  });
});

describe("GPUs", () => {
  it("defaults to one GPU per task on GPU machines and none elsewhere", () => {
    expect(allocate(resources(), capacity({ gpus: [gpu(0)] }))).toEqual({ gpuIds: [0] });
    expect(allocate(resources(), capacity())).toEqual({ gpuIds: [] });
    expect(allocate(resources({ gpus: 0 }), capacity({ gpus: [gpu(0)] }))).toEqual({ gpuIds: [] });
  });

  it("spreads 0.5 tasks over idle GPUs first, then pairs them up", () => {
    const offer = capacity({ gpus: [gpu(0), gpu(1)] });
    const half = resources({ gpus: 0.5 });
    const first = place(half, offer);
    const second = place(half, offer);
    expect(first).toHaveLength(1);
    expect(second).toHaveLength(1);
    expect(second).not.toEqual(first);
    const third = place(half, offer);
    const fourth = place(half, offer);
    expect(new Set([...(third ?? []), ...(fourth ?? [])])).toEqual(new Set([0, 1]));
    expect(place(half, offer)).toBeNull();
  });

  it("a half GPU goes to an idle GPU rather than one already half taken", () => {
    const offer = capacity({ gpus: [gpu(0), gpu(1, 16_384, 0.5)] });
    expect(allocate(resources({ gpus: 0.5 }), offer)).toEqual({ gpuIds: [0] });
  });

  it("a half GPU shares the tightest fit once no GPU is idle", () => {
    const offer = capacity({ gpus: [gpu(0, 16_384, 0.75), gpu(1, 16_384, 0.5)] });
    expect(allocate(resources({ gpus: 0.5 }), offer)).toEqual({ gpuIds: [1] });
  });

  it("a whole GPU is not given a GPU that is partly taken", () => {
    const offer = capacity({ gpus: [gpu(0, 16_384, 0.5)] });
    expect(allocate(resources({ gpus: 1 }), offer)).toBeNull();
  });

  it("several whole GPUs come from the ones with the most free memory, sorted by index", () => {
    const offer = capacity({ gpus: [gpu(0, 4096), gpu(1, 20_000), gpu(2, 30_000)] });
    expect(allocate(resources({ gpus: 2 }), offer)).toEqual({ gpuIds: [1, 2] });
    expect(allocate(resources({ gpus: 4 }), offer)).toBeNull();
  });

  it("a 16 GB task never fits a GPU with 8 GB free, and fits one with 16 GB free", () => {
    const task = resources({ gpus: 1, gpuMemoryGb: 16 });
    expect(allocate(task, capacity({ gpus: [gpu(0, 8192)] }))).toBeNull();
    expect(allocate(task, capacity({ gpus: [gpu(0, 8192), gpu(1, 16_384)] }))).toEqual({ gpuIds: [1] });
    expect(
      allocate(resources({ gpus: 0.5, gpuMemoryGb: 16 }), capacity({ gpus: [gpu(0, 8192)] })),
    ).toBeNull();
  });

  it("unknown free memory does not block a task", () => {
    expect(allocate(resources({ gpus: 1, gpuMemoryGb: 16 }), capacity({ gpus: [gpu(0, null)] }))).toEqual({
      gpuIds: [0],
    });
  });
});

describe("slots and CPUs", () => {
  it("needs a free slot", () => {
    expect(allocate(resources(), capacity({ freeSlots: 0 }))).toBeNull();
  });

  it("needs the CPUs it asks for", () => {
    expect(allocate(resources({ cpus: 4 }), capacity({ freeCpus: 3 }))).toBeNull();
    expect(allocate(resources({ cpus: 4 }), capacity({ freeCpus: 4 }))).toEqual({ gpuIds: [] });
  });
});

describe("GPU memory reservations", () => {
  it("a running task's reservation counts before it allocates anything", () => {
    // 19.5 GB free while idle; a 12 GB task started but has not allocated yet.
    expect(memoryForNewTask(19_968, 19_968, 12_288)).toBe(7680);
  });

  it("memory a running task already uses is not counted twice", () => {
    // The task took its 12 GB: the measurement shows it, the reservation too.
    expect(memoryForNewTask(7680, 19_968, 12_288)).toBe(7680);
  });

  it("memory someone else took since is seen in the measurement", () => {
    expect(memoryForNewTask(2000, 19_968, 0)).toBe(2000);
    expect(memoryForNewTask(null, 19_968, 12_288)).toBeNull();
  });
});

describe("why a task fits nowhere", () => {
  it("names the short resource", () => {
    const offer = capacity({ gpus: [gpu(0, 24_576), gpu(1, 16_384)] });
    expect(whyNoFit(resources({ gpus: 1, gpuMemoryGb: 30 }), offer)).toBe(
      "needs 30 GB of free GPU memory; the largest GPU has 24 GB free",
    );
    expect(whyNoFit(resources({ gpus: 3 }), offer)).toBe("needs 3 GPUs; this machine has 2");
    expect(whyNoFit(resources({ gpus: 1 }), capacity())).toBe("needs 1 GPU; this machine has none usable");
    expect(whyNoFit(resources({ tags: ["big"] }), offer)).toBe(
      "needs tag big, which this machine does not offer (--tag)",
    );
    expect(whyNoFit(resources({ gpus: 2, gpuMemoryGb: 20 }), offer)).toMatch(
      /needs 20 GB of free GPU memory on each of its GPUs; only 1 GPU has that much/,
    );
    expect(whyNoFit(resources({ gpus: 1, gpuMemoryGb: 8 }), offer)).toBeNull();
  });
});
