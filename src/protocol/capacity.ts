import type { Resources } from "../sweep/types.js";

/** One GPU as offered to the scheduler. */
export interface GpuOffer {
  index: number;
  /** How much of the GPU is not yet given to tasks: 1 (whatever the slots), minus tasks' shares. */
  freeShare: number;
  /** Free memory a new task may count on (`memoryForNewTask` on an agent); null when unknown. */
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
  /**
   * How long the agent may still run tasks (a SLURM allocation's time left, less the warning
   * before its end); null or absent when nothing ends it. A task fits only if its `timeout` does.
   */
  timeLeftMs?: number | null;
}

/**
 * Whether a task with this `timeout` (null: none) ends before the agent's time runs out. A task
 * without a timeout fits any agent: it may be stopped at the allocation's end and requeued.
 */
export function timeFits(timeoutMs: number | null, capacity: Capacity): boolean {
  const left = capacity.timeLeftMs;
  return timeoutMs === null || left === undefined || left === null || timeoutMs <= left;
}

/** Why a task with this `timeout` cannot start on an agent with `capacity`'s time left; null when it can. */
export function whyNoTime(timeoutMs: number | null, capacity: Capacity): string | null {
  if (timeFits(timeoutMs, capacity)) return null;
  return `needs up to ${duration(timeoutMs ?? 0)} (its timeout); this allocation has ${duration(capacity.timeLeftMs ?? 0)} left before its end`;
}

function duration(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
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
 * Picks GPUs for a task from what is free, or null if it does not fit now. A fraction (0.5) goes
 * to an idle GPU when there is one (sharing costs both tasks speed), else to the GPU it fits most
 * tightly; whole GPUs go to idle ones with the most free memory. A GPU's share is 1 whatever the
 * slot count: `--slots` caps how many tasks run, it never lets GPU tasks share past their
 * `gpus`. `gpu_memory_gb` is checked against each GPU's free memory as the agent offers it
 * (measured, less what running tasks reserved: `memoryForNewTask`), so GPUs busy with other
 * users' processes or with this agent's own tasks are skipped. A task with `tags` fits only an
 * agent offering every one of them.
 */
export function allocate(resources: Resources, capacity: Capacity): { gpuIds: number[] } | null {
  if (capacity.freeSlots < 1 || resources.cpus > capacity.freeCpus) return null;
  if (!tagsFit(resources, capacity.tags ?? [])) return null;
  const wanted = gpusWanted(resources, capacity.hasGpus);
  if (wanted === 0) return { gpuIds: [] };
  const needMiB = resources.gpuMemoryGb * 1024;
  const roomy = capacity.gpus.filter((gpu) => gpu.freeMemoryMiB === null || gpu.freeMemoryMiB >= needMiB);
  const byMemory = (a: GpuOffer, b: GpuOffer) =>
    (b.freeMemoryMiB ?? 0) - (a.freeMemoryMiB ?? 0) || a.index - b.index;
  if (wanted < 1) {
    const idle = roomy.filter(isIdle).sort(byMemory)[0];
    if (idle) return { gpuIds: [idle.index] };
    const tightest = roomy
      .filter((gpu) => gpu.freeShare >= wanted - 1e-9)
      .sort((a, b) => a.freeShare - b.freeShare || a.index - b.index)[0];
    return tightest ? { gpuIds: [tightest.index] } : null;
  }
  const whole = roomy.filter(isIdle).sort(byMemory);
  const count = Math.ceil(wanted);
  if (whole.length < count) return null;
  return {
    gpuIds: whole
      .slice(0, count)
      .map((gpu) => gpu.index)
      .sort((a, b) => a - b),
  };
}

/**
 * `allocate` for a task with its run policy: also null when its `timeout` outlasts the agent's
 * time left (its allocation would kill it first).
 */
export function allocateTask(
  policy: { resources: Resources; timeoutMs: number | null },
  capacity: Capacity,
): { gpuIds: number[] } | null {
  return timeFits(policy.timeoutMs, capacity) ? allocate(policy.resources, capacity) : null;
}

/** No task holds any share of it. */
function isIdle(gpu: GpuOffer): boolean {
  return gpu.freeShare >= 1 - 1e-9;
}

/**
 * The GPU memory a new task may count on: what nvidia-smi measures free now, but never more than
 * was free while none of this agent's tasks ran on the GPU (`idleFreeMiB`) less what the tasks
 * running there reserved (`gpu_memory_gb` each, held until they end). A task that has not yet
 * allocated its memory still holds its reservation, and one that uses more than it asked for
 * shows in the measurement. null when the GPU does not report free memory.
 */
export function memoryForNewTask(
  measuredFreeMiB: number | null,
  idleFreeMiB: number | null,
  reservedMiB: number,
): number | null {
  if (measuredFreeMiB === null) return null;
  return Math.max(0, Math.min(measuredFreeMiB, (idleFreeMiB ?? measuredFreeMiB) - reservedMiB));
}

/**
 * Why a task can never fit an agent offering `idle` (its capacity with nothing running), in words
 * that name the short resource; null when it fits. `totalMemory`: the offer's GPU memory is each
 * GPU's size, not what is free now. (Default: false)
 */
export function whyNoFit(resources: Resources, idle: Capacity, totalMemory = false): string | null {
  if (allocate(resources, idle) !== null) return null;
  const missing = (resources.tags ?? []).filter((tag) => !(idle.tags ?? []).includes(tag));
  if (missing.length > 0)
    return `needs tag${missing.length > 1 ? "s" : ""} ${missing.join(", ")}, which this machine does not offer (--tag)`;
  const wanted = gpusWanted(resources, idle.hasGpus);
  const count = Math.ceil(wanted);
  if (idle.gpus.length < count) {
    const have = idle.gpus.length === 0 ? "none usable" : String(idle.gpus.length);
    return `needs ${count} GPU${count > 1 ? "s" : ""}; this machine has ${have}`;
  }
  const needMiB = resources.gpuMemoryGb * 1024;
  const memories = idle.gpus.map((gpu) => gpu.freeMemoryMiB ?? Number.POSITIVE_INFINITY);
  const roomy = memories.filter((free) => free >= needMiB).length;
  if (roomy < count) {
    const largest = Math.max(...memories);
    const which =
      count > 1
        ? `only ${roomy} GPU${roomy === 1 ? " has" : "s have"} that much`
        : `the largest GPU has ${gb(largest)}${totalMemory ? "" : " free"}`;
    return `needs ${gb(needMiB)} of free GPU memory${count > 1 ? " on each of its GPUs" : ""}; ${which}`;
  }
  return `needs ${resources.cpus} CPUs, ${count} GPU${count === 1 ? "" : "s"} and ${gb(needMiB)} of GPU memory; this machine cannot offer them together`;
}

function gb(mib: number): string {
  const value = mib / 1024;
  return `${Number.isInteger(value) ? value : value.toFixed(1)} GB`;
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
