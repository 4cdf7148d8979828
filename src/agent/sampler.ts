import type { TaskUsage } from "../protocol/interfaces.js";
import {
  type GpuProcess,
  type GpuUsage,
  type ProbeOptions,
  readGpuProcesses,
  readGpuUsage,
} from "./gpuProbe.js";
import { isGone, listPids, readProcStat, residentKiB } from "./procfs.js";

/**
 * What a task used, as sampled while it ran. Memory is in MiB (2^20 bytes, nvidia-smi's unit)
 * though the columns say "mb".
 * - `peak_rss_mb`: the largest sum, over one sample, of the resident memory (VmRSS) of every live
 *   process in the task's process group. Pages shared between processes (a forked data loader's
 *   copy-on-write memory) count once per process, as when summing `ps` output. 0 without /proc.
 * - `gpu_util_mean`: utilization.gpu averaged over the task's GPUs, then over samples (%). It is
 *   the whole device's: other processes on a shared GPU count too.
 * - `gpu_mem_peak_mb`: the largest sum, over one sample, of memory used on the task's GPUs. From
 *   the task's own processes (`--query-compute-apps`) once they are seen there; otherwise (they
 *   never were: no CUDA context yet, or a container whose pids the driver does not know)
 *   memory.used, which includes every other process on those GPUs.
 * - `energy_wh`: power.draw summed over the task's GPUs, integrated over the run by the trapezoid
 *   rule, the first and last readings held to the start and end of the run. A GPU shared with
 *   other tasks is counted whole for each of them.
 * - `samples`: how many times the process group was sampled.
 * The GPU fields are null for CPU tasks and when nvidia-smi never answered (or never reported the
 * value).
 */
export type SampleSummary = TaskUsage;

/** One reading of every GPU of the machine. */
export interface GpuReading {
  /** performance.now() halfway through the query. */
  at: number;
  gpus: GpuUsage[];
  /** Compute processes on every GPU; null when nvidia-smi could not list them. */
  processes: GpuProcess[] | null;
}

/** Reads every GPU's usage, sharing one nvidia-smi call between the samplers of concurrent tasks. */
export interface GpuReader {
  /** A reading at most `maxAgeMs` old, or the one in flight; rejects when nvidia-smi fails. */
  read(maxAgeMs: number): Promise<GpuReading>;
}

/**
 * A GpuReader running `nvidia-smi` with `options` (Default: "nvidia-smi" on process.env's PATH,
 * 5 s timeout). Each reading is one `--query-gpu` call for all GPUs, with a `--query-compute-apps`
 * call alongside; concurrent tasks share readings, so eight tasks sampling every second cost about
 * two readings a second, not eight.
 */
export function gpuReader(options: ProbeOptions = {}): GpuReader {
  let inFlight: Promise<GpuReading> | null = null;
  let last: { reading: GpuReading; completedAt: number } | null = null;
  return {
    read(maxAgeMs) {
      if (inFlight) return inFlight;
      if (last && performance.now() - last.completedAt <= maxAgeMs) return Promise.resolve(last.reading);
      const started = performance.now();
      const reading = Promise.all([readGpuUsage(options), readGpuProcesses(options).catch(() => null)]).then(
        ([gpus, processes]) => {
          const completedAt = performance.now();
          const result: GpuReading = { at: (started + completedAt) / 2, gpus, processes };
          last = { reading: result, completedAt };
          return result;
        },
      );
      inFlight = reading.finally(() => {
        inFlight = null;
      });
      return inFlight;
    },
  };
}

export interface SamplerOptions {
  /** The task's process group id: its leader's pid. */
  processGroup: number;
  /** The GPUs the task was given; none for a CPU task (nvidia-smi is then never run). */
  gpuIndices: readonly number[];
  /** Time between samples. (Default: 1000) */
  intervalMs?: number;
  /**
   * When the first sample is taken. A sample reads every process of the machine (over a
   * millisecond on the agent's event loop), which a task of a few milliseconds cannot afford at
   * its start; the peak memory of a task shorter than this is not worth knowing. (Default: 0, at
   * once)
   */
  firstAfterMs?: number;
  /** Where GPU readings come from. (Default: gpuReader() of its own) */
  gpus?: GpuReader;
}

interface PowerPoint {
  at: number;
  watts: number;
}

/**
 * Samples a running task's resources until `stop()`. Sampling never throws: a sample that cannot
 * be taken (a process gone mid-read, nvidia-smi failing or hanging) records nothing.
 */
export class TaskSampler {
  private readonly processGroup: number;
  private readonly gpuIndices: readonly number[];
  private readonly intervalMs: number;
  private readonly gpus: GpuReader | null;
  private readonly startedAt = performance.now();
  private timer: NodeJS.Timeout;
  private summary: SampleSummary | null = null;
  private samples = 0;
  private peakRssKiB = 0;
  private gpuQueryBusy = false;
  private lastGpuAt = Number.NEGATIVE_INFINITY;
  /** When a reading last showed one of the task's GPUs busy (performance.now()); hangWatch.ts. */
  gpuBusyAt: number | null = null;
  private utilSum = 0;
  private utilSamples = 0;
  private ownMemPeakMiB: number | null = null;
  private deviceMemPeakMiB: number | null = null;
  private firstPower: PowerPoint | null = null;
  private lastPower: PowerPoint | null = null;
  private energyWs = 0;

  constructor(options: SamplerOptions) {
    this.processGroup = options.processGroup;
    this.gpuIndices = [...options.gpuIndices];
    this.intervalMs = options.intervalMs ?? 1000;
    this.gpus = this.gpuIndices.length > 0 ? (options.gpus ?? gpuReader()) : null;
    const firstAfterMs = options.firstAfterMs ?? 0;
    if (firstAfterMs <= 0) {
      this.sample(true);
      this.timer = this.every();
    } else {
      this.timer = setTimeout(() => {
        this.sample(true);
        this.timer = this.every();
      }, firstAfterMs);
      this.timer.unref();
    }
  }

  private every(): NodeJS.Timeout {
    const timer = setInterval(() => this.sample(false), this.intervalMs);
    timer.unref();
    return timer;
  }

  /** Ends sampling (a GPU reading still on its way is dropped) and sums up. Idempotent. */
  stop(): SampleSummary {
    if (this.summary) return this.summary;
    clearTimeout(this.timer);
    clearInterval(this.timer);
    const now = performance.now();
    let energyWh: number | null = null;
    if (this.firstPower && this.lastPower) {
      const head = this.firstPower.watts * Math.max(0, this.firstPower.at - this.startedAt);
      const tail = this.lastPower.watts * Math.max(0, now - this.lastPower.at);
      energyWh = (this.energyWs + (head + tail) / 1000) / 3600;
    }
    this.summary = {
      // Not measured is not 0: a task that ended before its first sample gets a blank cell.
      peak_rss_mb: this.samples > 0 ? round(this.peakRssKiB / 1024, 1) : null,
      gpu_util_mean: this.utilSamples > 0 ? round(this.utilSum / this.utilSamples, 1) : null,
      gpu_mem_peak_mb: this.ownMemPeakMiB ?? this.deviceMemPeakMiB,
      energy_wh: energyWh === null ? null : round(energyWh, 6),
      samples: this.samples,
    };
    return this.summary;
  }

  private sample(first: boolean): void {
    if (this.summary) return;
    let pids: ReadonlySet<number> = new Set();
    try {
      // A pass over /proc another task's sampler made will do if it saw this task running: made
      // since it started (the first sample), or within half an interval (the others).
      const since = first ? this.startedAt : performance.now() - this.intervalMs / 2;
      const group = processGroupRss(this.processGroup, since);
      if (group) {
        this.samples++;
        this.peakRssKiB = Math.max(this.peakRssKiB, group.rssKiB);
        pids = group.pids;
      }
    } catch {
      // nothing recorded for this sample
    }
    // A hung nvidia-smi (up to its timeout) must not pile up calls: skip while one is out.
    if (!this.gpus || this.gpuQueryBusy) return;
    this.gpuQueryBusy = true;
    // The first reading must be fresh; later ones may be shared with other tasks' samplers.
    this.gpus
      .read(first ? 0 : this.intervalMs / 2)
      .then(
        (reading) => {
          if (!this.summary) this.addGpuReading(reading, pids);
        },
        () => undefined, // nvidia-smi failed: nothing recorded for this sample
      )
      .catch(() => undefined)
      .finally(() => {
        this.gpuQueryBusy = false;
      });
  }

  private addGpuReading(reading: GpuReading, pids: ReadonlySet<number>): void {
    if (reading.at <= this.lastGpuAt) return; // a shared reading this sampler has already seen
    const mine: GpuUsage[] = [];
    for (const index of this.gpuIndices) {
      const gpu = reading.gpus.find((candidate) => candidate.index === index);
      if (!gpu) return; // the GPU vanished from the listing: record nothing
      mine.push(gpu);
    }
    this.lastGpuAt = reading.at;

    const utilizations = known(mine.map((gpu) => gpu.utilizationPercent));
    if (utilizations.length > 0) {
      if (utilizations.some((percent) => percent > 0)) this.gpuBusyAt = performance.now();
      this.utilSum += sum(utilizations) / utilizations.length;
      this.utilSamples++;
    }

    const used = mine.map((gpu) => gpu.memoryUsedMiB);
    if (used.every((value) => value !== null)) {
      this.deviceMemPeakMiB = Math.max(this.deviceMemPeakMiB ?? 0, sum(known(used)));
    }
    const uuids = new Set(mine.map((gpu) => gpu.uuid));
    const own = (reading.processes ?? []).filter(
      (process) => uuids.has(process.gpuUuid) && pids.has(process.pid) && process.usedMemoryMiB !== null,
    );
    if (own.length > 0) {
      const ownMiB = sum(known(own.map((process) => process.usedMemoryMiB)));
      this.ownMemPeakMiB = Math.max(this.ownMemPeakMiB ?? 0, ownMiB);
    }

    // Energy needs every GPU's power: a sum missing one would understate it.
    const watts = mine.map((gpu) => gpu.powerW);
    if (watts.every((value) => value !== null)) {
      const point = { at: reading.at, watts: sum(known(watts)) };
      if (this.lastPower)
        this.energyWs += ((this.lastPower.watts + point.watts) / 2) * ((point.at - this.lastPower.at) / 1000);
      this.firstPower ??= point;
      this.lastPower = point;
    }
  }
}

/**
 * The summed resident memory (KiB) and pids of the live processes in a process group, from a
 * pass over /proc made at `since` or later (one made now if the last one is older): each
 * process's `stat` gives its group, and only members' `status` is read for VmRSS. Null when
 * /proc cannot be read.
 */
export function processGroupRss(
  processGroup: number,
  since = Number.POSITIVE_INFINITY,
): { rssKiB: number; pids: Set<number> } | null {
  const scan = lastScan && lastScan.at >= since ? lastScan : scanGroups();
  if (scan === null) return null;
  lastScan = scan;
  let rssKiB = 0;
  const pids = new Set<number>();
  for (const pid of scan.groups.get(processGroup) ?? []) {
    // Null: exited since the pass (or a kernel thread).
    const resident = residentKiB(pid);
    if (resident === null) continue;
    pids.add(pid);
    rssKiB += resident;
  }
  return { rssKiB, pids };
}

/** Which live processes are in which process group, as of `at` (performance.now()). */
interface GroupsScan {
  at: number;
  groups: Map<number, number[]>;
}

/**
 * The last pass over /proc, shared by the samplers of all running tasks: a pass reads every
 * process of the machine (about a hundred opens on an idle one, over a millisecond of the event
 * loop), and eight slots of 100 ms tasks each sampling once made one per task: a fifth of
 * node's CPU for 400 such tasks.
 */
let lastScan: GroupsScan | null = null;

function scanGroups(): GroupsScan | null {
  // Taken before the listing: a process started after this may be missing from it.
  const at = performance.now();
  const all = listPids();
  if (all === null) return null;
  const groups = new Map<number, number[]>();
  for (const pid of all) {
    const stat = readProcStat(pid);
    // Null: exited while we looked.
    if (stat === null || isGone(stat)) continue;
    const members = groups.get(stat.processGroup);
    if (members) members.push(pid);
    else groups.set(stat.processGroup, [pid]);
  }
  return { at, groups };
}

function known(values: ReadonlyArray<number | null>): number[] {
  return values.filter((value): value is number => value !== null);
}

function sum(values: readonly number[]): number {
  let total = 0;
  for (const value of values) total += value;
  return total;
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}
