import type { Capacity, GpuOffer } from "../protocol/capacity.js";
import { memoryForNewTask, shareOf } from "../protocol/capacity.js";
import type { Lease } from "../protocol/interfaces.js";
import type { RunningProcess } from "./runProcess.js";
import type { TaskSampler } from "./sampler.js";
import type { Slot } from "./slots.js";

/** A task whose process runs on this agent, holding its slot, CPUs and GPU shares. */
export interface Running {
  lease: Lease;
  process: RunningProcess;
  gpuShare: number;
  cpus: number;
  /** Samples its resources from the moment its pid is known (sampler.ts). */
  sampler?: TaskSampler;
  /** No longer this agent's (stale lease, cancelled): stopped, and reported as interrupted. */
  abandoned?: boolean;
}

export interface OccupancyOptions {
  slots: Slot[];
  /** Free memory per GPU index, as probed at start. */
  gpuFreeMiB: Map<number, number | null>;
  /**
   * Measures free GPU memory again (nvidia-smi), so `gpu_memory_gb` is checked against what is
   * free at lease time: a GPU that another user's process filled is skipped until it frees up.
   * Called before leasing, at most every `gpuRefreshMs`. (Default: the start-up figures only)
   */
  readGpuFreeMiB?: () => Promise<Map<number, number | null>>;
  /** (Default: 1 s) */
  gpuRefreshMs?: number;
  cpuCount: number;
  /** Tags this agent offers: tasks whose resources.tags it lacks are not leased to it. (Default: []) */
  tags?: string[];
  /** When this agent's SLURM allocation ends (ms since the epoch); null: never. (Default: null) */
  endsAt?: number | null;
  /** How long before `endsAt` tasks must be done (SLURM's warning signal). (Default: 0) */
  stopBeforeMs?: number;
}

/**
 * What this agent's running tasks hold of its slots, CPUs, GPU shares and GPU memory, and so
 * the `Capacity` it offers: now, once a given task ends, or in the place of one.
 */
export class Occupancy {
  readonly running = new Map<number, Running>();
  readonly gpus: GpuOffer[];
  /** Free memory per GPU last measured while none of this agent's tasks ran there (memoryForNewTask). */
  private readonly idleFreeMiB = new Map<number, number | null>();
  /** Tasks started per GPU, so a measurement a start overlapped is not taken as an idle one. */
  private readonly gpuStarts = new Map<number, number>();
  private gpuMeasuredAt = 0;

  constructor(private readonly options: OccupancyOptions) {
    // Each GPU is one share however many slots are pinned to it: more slots than GPUs let more
    // tasks run at once only where tasks ask for fractions (`gpus: 0.5`), never two whole ones.
    const indices = new Set(options.slots.flatMap((slot) => slot.gpuIndices));
    this.gpus = [...indices].map((index) => ({
      index,
      freeShare: 1,
      freeMemoryMiB: options.gpuFreeMiB.get(index) ?? null,
    }));
    for (const gpu of this.gpus) this.idleFreeMiB.set(gpu.index, gpu.freeMemoryMiB);
  }

  get hasGpus(): boolean {
    return this.gpus.length > 0;
  }

  /** Counts a task as running: it takes its slot, CPUs and GPU shares. */
  take(running: Running): void {
    for (const index of running.lease.gpuIds) {
      const gpu = this.gpus.find((offer) => offer.index === index);
      if (gpu) gpu.freeShare -= running.gpuShare;
      this.gpuStarts.set(index, (this.gpuStarts.get(index) ?? 0) + 1);
    }
    this.running.set(running.lease.attemptId, running);
  }

  /** Gives a task's slot, CPUs and GPU shares back: its process is gone. */
  free(running: Running): void {
    for (const index of running.lease.gpuIds) {
      const gpu = this.gpus.find((offer) => offer.index === index);
      if (gpu) gpu.freeShare += running.gpuShare;
    }
    this.running.delete(running.lease.attemptId);
  }

  /**
   * Measures free GPU memory again (at most every `gpuRefreshMs`), so `gpu_memory_gb` is checked
   * against what is free at lease time.
   */
  async refreshGpuMemory(): Promise<void> {
    const read = this.options.readGpuFreeMiB;
    if (!read || this.gpus.length === 0) return;
    if (Date.now() - this.gpuMeasuredAt < (this.options.gpuRefreshMs ?? 1000)) return;
    this.gpuMeasuredAt = Date.now();
    const idleBefore = this.gpus.filter((gpu) => !this.busyOn(gpu.index)).map((gpu) => gpu.index);
    const startsBefore = new Map(this.gpuStarts);
    try {
      const free = await read();
      for (const gpu of this.gpus) {
        gpu.freeMemoryMiB = free.get(gpu.index) ?? gpu.freeMemoryMiB;
        const stayedIdle =
          idleBefore.includes(gpu.index) &&
          !this.busyOn(gpu.index) &&
          this.gpuStarts.get(gpu.index) === startsBefore.get(gpu.index);
        if (stayedIdle) this.idleFreeMiB.set(gpu.index, gpu.freeMemoryMiB);
      }
    } catch {
      // nvidia-smi failing now and then must not stop leasing: keep the last figures.
    }
  }

  capacity(): Capacity {
    let cpusInUse = 0;
    for (const task of this.running.values()) cpusInUse += task.cpus;
    const totalCpus = Math.max(this.options.cpuCount, this.options.slots.length);
    return {
      freeSlots: this.options.slots.length - this.running.size,
      // A task asking for more CPUs than the machine has still runs, alone.
      freeCpus: this.running.size === 0 ? Number.POSITIVE_INFINITY : totalCpus - cpusInUse,
      gpus: this.gpus.map((gpu) => ({
        ...gpu,
        freeMemoryMiB: memoryForNewTask(
          gpu.freeMemoryMiB,
          this.idleFreeMiB.get(gpu.index) ?? null,
          this.reservedOn(gpu.index),
        ),
      })),
      hasGpus: this.gpus.length > 0,
      tags: [...(this.options.tags ?? [])],
      timeLeftMs: this.timeLeftMs(),
    };
  }

  /** How long tasks may still run here, or null when no allocation ends. */
  timeLeftMs(): number | null {
    const endsAt = this.options.endsAt ?? null;
    if (endsAt === null) return null;
    return Math.max(0, endsAt - (this.options.stopBeforeMs ?? 0) - Date.now());
  }

  /** Whether a leased task fits what is free now: a slot, its CPUs, its GPUs' shares. */
  fitsNow(lease: Lease): boolean {
    return fitsWithin(lease, this.capacity(), this.gpus.length > 0);
  }

  /** Exactly what a task held ahead will free when it ends: its slot, CPUs and GPU shares. */
  capacityFreedBy(lease: Lease): Capacity {
    const resources = lease.task.policy.resources;
    const share = shareOf(resources, this.gpus.length > 0);
    // Its memory reservation comes back only once it runs; a held one's is not counted yet.
    const freedMiB = this.running.has(lease.attemptId) ? reservationOf(lease) : 0;
    return {
      freeSlots: 1,
      // Replacing the only running task, it runs alone: any CPU count fits, as on an idle agent.
      freeCpus: this.running.size === 1 ? Number.POSITIVE_INFINITY : resources.cpus,
      gpus: this.capacity()
        .gpus.filter((gpu) => lease.gpuIds.includes(gpu.index))
        .map((gpu) => ({ ...gpu, freeShare: share, freeMemoryMiB: plus(gpu.freeMemoryMiB, freedMiB) })),
      hasGpus: this.gpus.length > 0,
      tags: [...(this.options.tags ?? [])],
      timeLeftMs: this.timeLeftMs(),
    };
  }

  /** What would be free once `task` ends. */
  capacityWithout(task: Running): Capacity {
    const capacity = this.capacity();
    const freeCpus = this.running.size === 1 ? Number.POSITIVE_INFINITY : capacity.freeCpus + task.cpus;
    return {
      ...capacity,
      freeSlots: capacity.freeSlots + 1,
      freeCpus,
      gpus: capacity.gpus.map((gpu) =>
        task.lease.gpuIds.includes(gpu.index)
          ? {
              ...gpu,
              freeShare: gpu.freeShare + task.gpuShare,
              freeMemoryMiB: plus(gpu.freeMemoryMiB, reservationOf(task.lease)),
            }
          : gpu,
      ),
    };
  }

  /**
   * What a lease for the free slots may take while `next`, chained, waits to replace `follows`:
   * no more than is free now, nor than will be free once it has replaced it.
   */
  besideChained(capacity: Capacity, next: Lease, follows: Running): Capacity {
    const nextShare = shareOf(next.task.policy.resources, this.gpus.length > 0);
    return {
      ...capacity,
      freeCpus: Math.min(
        capacity.freeCpus,
        capacity.freeCpus + follows.cpus - next.task.policy.resources.cpus,
      ),
      gpus: capacity.gpus.map((gpu) => {
        const freed = follows.lease.gpuIds.includes(gpu.index) ? follows.gpuShare : 0;
        const taken = next.gpuIds.includes(gpu.index) ? nextShare : 0;
        const freedMiB = follows.lease.gpuIds.includes(gpu.index) ? reservationOf(follows.lease) : 0;
        const takenMiB = next.gpuIds.includes(gpu.index) ? reservationOf(next) : 0;
        return {
          ...gpu,
          freeShare: Math.min(gpu.freeShare, gpu.freeShare + freed - taken),
          freeMemoryMiB: plus(gpu.freeMemoryMiB, Math.min(0, freedMiB - takenMiB)),
        };
      }),
    };
  }

  /** Whether a task of this agent runs on the GPU. */
  private busyOn(index: number): boolean {
    for (const task of this.running.values()) if (task.lease.gpuIds.includes(index)) return true;
    return false;
  }

  /** GPU memory the tasks running on a GPU reserved (`gpu_memory_gb`), held until they end. */
  private reservedOn(index: number): number {
    let reserved = 0;
    for (const task of this.running.values())
      if (task.lease.gpuIds.includes(index)) reserved += reservationOf(task.lease);
    return reserved;
  }
}

/** Whether a leased task, on the GPUs it was given, fits `capacity`: a slot, its CPUs, its GPU shares. */
export function fitsWithin(lease: Lease, capacity: Capacity, hasGpus: boolean): boolean {
  const resources = lease.task.policy.resources;
  if (capacity.freeSlots < 1 || resources.cpus > capacity.freeCpus) return false;
  const share = shareOf(resources, hasGpus);
  return lease.gpuIds.every((index) => {
    const gpu = capacity.gpus.find((offer) => offer.index === index);
    return gpu !== undefined && gpu.freeShare >= share - 1e-9;
  });
}

/** The GPU memory a task reserves on each of its GPUs while it runs. */
function reservationOf(lease: Lease): number {
  return lease.task.policy.resources.gpuMemoryGb * 1024;
}

function plus(mib: number | null, delta: number): number | null {
  return mib === null ? null : mib + delta;
}

/** `count` times `capacity`'s slots, CPUs and GPU shares. */
export function times(capacity: Capacity, count: number): Capacity {
  return {
    ...capacity,
    freeSlots: capacity.freeSlots * count,
    freeCpus: capacity.freeCpus * count,
    gpus: capacity.gpus.map((gpu) => ({ ...gpu, freeShare: gpu.freeShare * count })),
  };
}
