import type { GpuInfo } from "./gpuProbe.js";

/** One place to run a task: pinned to `gpuIndices` (nvidia-smi indices), or CPU-only when empty. */
export interface Slot {
  index: number;
  gpuIndices: number[];
}

export interface SlotOptions {
  /** The machine's GPUs, as `probeGpus` reports them. */
  gpus: GpuInfo[];
  /** CPU cores available; the number of slots when no GPU qualifies. */
  cpuCount: number;
  /** Exactly this many slots, spread round-robin over the qualifying GPUs. (Default: one per qualifying GPU) */
  slotsOverride?: number;
  /** A GPU qualifies only with at least this many GB (1 GB = 1024 MiB) free. (Default: 4) */
  minFreeGb?: number;
  /** Only these GPU indices may be used, e.g. from `--gpus 0,2`. (Default: all GPUs) */
  gpuFilter?: number[];
}

/**
 * How many tasks run at once on this machine, and where. Each GPU with enough free memory gets
 * one slot pinned to it; a GPU that is busy with someone else's job is left alone. When no GPU
 * qualifies, tasks run on the CPU, one per core. `slotsOverride` changes only the count.
 */
export function planSlots(options: SlotOptions): Slot[] {
  const { gpus, slotsOverride, minFreeGb = 4, gpuFilter } = options;
  if (slotsOverride !== undefined && !(Number.isInteger(slotsOverride) && slotsOverride > 0))
    throw new Error(`the slot count must be a positive whole number, got ${slotsOverride}`);
  if (!(minFreeGb >= 0)) throw new Error(`the minimum free memory must be 0 GB or more, got ${minFreeGb}`);
  const usable = gpuFilter === undefined ? gpus : selectGpus(gpus, gpuFilter);
  const qualifying = usable
    .filter((gpu) => gpu.memoryFreeMiB >= minFreeGb * 1024)
    .sort((a, b) => a.index - b.index);

  if (qualifying.length === 0) {
    // A machine always has at least one core, even if the caller's count says otherwise.
    const count = slotsOverride ?? Math.max(1, Math.floor(options.cpuCount));
    return Array.from({ length: count }, (_, index) => ({ index, gpuIndices: [] }));
  }
  const count = slotsOverride ?? qualifying.length;
  return Array.from({ length: count }, (_, index) => ({
    index,
    gpuIndices: [(qualifying[index % qualifying.length] as GpuInfo).index],
  }));
}

// A filter naming a GPU the machine lacks is a typo or a different machine; running on other
// GPUs (or the CPU) instead would silently ignore what the user asked for.
function selectGpus(gpus: GpuInfo[], gpuFilter: number[]): GpuInfo[] {
  const present = new Set(gpus.map((gpu) => gpu.index));
  const missing = gpuFilter.filter((index) => !present.has(index));
  if (missing.length > 0) {
    const have = present.size === 0 ? "no GPUs" : `GPUs ${[...present].join(",")}`;
    throw new Error(`GPU filter names GPU ${missing.join(",")}, but this machine has ${have}`);
  }
  const wanted = new Set(gpuFilter);
  return gpus.filter((gpu) => wanted.has(gpu.index));
}

/**
 * The CUDA_VISIBLE_DEVICES value for a slot: "" hides every GPU from a CPU slot's task. The
 * indices are nvidia-smi's (PCI bus order), so the task must also get CUDA_DEVICE_ORDER=PCI_BUS_ID;
 * CUDA's default order (fastest first) can number the GPUs differently.
 */
export function cudaVisibleDevices(slot: Slot): string {
  return slot.gpuIndices.join(",");
}
