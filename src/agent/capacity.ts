import type { Resources } from "../sweep/types.js";

/** One GPU as offered to the scheduler. */
export interface GpuOffer {
  index: number;
  /** How much of the GPU is not yet given to tasks: slots pinned to it, minus tasks' shares. */
  freeShare: number;
  /** Free memory as last measured; null when unknown. */
  freeMemoryMiB: number | null;
}

/** What an agent can take on right now. Plain data, so it can travel in a lease request. */
export interface Capacity {
  freeSlots: number;
  freeCpus: number;
  gpus: GpuOffer[];
  /** Whether the machine has GPUs at all (decides the default of resources.gpus). */
  hasGpus: boolean;
  /** Tags the agent offers (`--tag`): a task runs only where all of its resources.tags are offered. */
  tags: string[];
}

/** Whether an agent offering `offered` tags may run a task asking for these resources' tags. */
export function tagsFit(resources: Resources, offered: readonly string[]): boolean {
  // Policies stored before tags existed lack the field.
  const wanted = resources.tags ?? [];
  return wanted.every((tag) => offered.includes(tag));
}

/** How many GPUs a task asks for, after defaults: one on GPU machines, none elsewhere. */
export function gpusWanted(resources: Resources, hasGpus: boolean): number {
  return resources.gpus ?? (hasGpus ? 1 : 0);
}

/**
 * Picks GPUs for a task from what is free, or null if it does not fit now. Fractions (0.5) go to
 * the GPU that fits them most tightly, so halves pair up on one GPU; whole GPUs go to those with
 * the most free memory. `gpu_memory_gb` is checked against each GPU's measured free memory, so
 * GPUs busy with other users' processes are skipped. A task with `tags` fits only an agent
 * offering every one of them.
 */
export function allocate(resources: Resources, capacity: Capacity): { gpuIds: number[] } | null {
  if (capacity.freeSlots < 1 || resources.cpus > capacity.freeCpus) return null;
  if (!tagsFit(resources, capacity.tags ?? [])) return null;
  const wanted = gpusWanted(resources, capacity.hasGpus);
  if (wanted === 0) return { gpuIds: [] };
  const needMiB = resources.gpuMemoryGb * 1024;
  const roomy = capacity.gpus.filter((gpu) => gpu.freeMemoryMiB === null || gpu.freeMemoryMiB >= needMiB);
  if (wanted < 1) {
    const tightest = roomy
      .filter((gpu) => gpu.freeShare >= wanted - 1e-9)
      .sort((a, b) => a.freeShare - b.freeShare || a.index - b.index)[0];
    return tightest ? { gpuIds: [tightest.index] } : null;
  }
  const whole = roomy
    .filter((gpu) => gpu.freeShare >= 1 - 1e-9)
    .sort((a, b) => (b.freeMemoryMiB ?? 0) - (a.freeMemoryMiB ?? 0) || a.index - b.index);
  const count = Math.ceil(wanted);
  if (whole.length < count) return null;
  return {
    gpuIds: whole
      .slice(0, count)
      .map((gpu) => gpu.index)
      .sort((a, b) => a - b),
  };
}

/** Whether a task could ever run on an agent with this much capacity when idle. */
export function couldEverFit(resources: Resources, idle: Capacity): boolean {
  return allocate(resources, idle) !== null;
}

/** The share of each allocated GPU a task holds. */
export function shareOf(resources: Resources, hasGpus: boolean): number {
  const wanted = gpusWanted(resources, hasGpus);
  return Math.min(wanted, 1);
}

/**
 * What is left of `capacity` once a task with these resources holds `gpuIds`: the next task of
 * a multi-task lease must fit the remainder, not the whole.
 */
export function consume(capacity: Capacity, resources: Resources, gpuIds: readonly number[]): Capacity {
  const share = shareOf(resources, capacity.hasGpus);
  const needMiB = resources.gpuMemoryGb * 1024;
  return {
    ...capacity,
    freeSlots: capacity.freeSlots - 1,
    freeCpus: capacity.freeCpus - resources.cpus,
    gpus: capacity.gpus.map((gpu) =>
      gpuIds.includes(gpu.index)
        ? {
            ...gpu,
            freeShare: gpu.freeShare - share,
            freeMemoryMiB: gpu.freeMemoryMiB === null ? null : gpu.freeMemoryMiB - needMiB,
          }
        : gpu,
    ),
  };
}
