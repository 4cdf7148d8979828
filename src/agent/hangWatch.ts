import { statSync } from "node:fs";
import type { Lease } from "../protocol/interfaces.js";
import { formatDuration } from "../sweep/duration.js";
import { appendNote, type RunningProcess } from "./runProcess.js";
import type { TaskSampler } from "./sampler.js";

/**
 * Watches a started attempt whose phase sets hang_timeout (none otherwise) until its process
 * exits, and stops it as hung; a GPU task's busy GPUs count as life, read from its sampler.
 */
export function watchForHang(
  lease: Lease,
  files: { logPath: string; eventsPath: string },
  sampler: TaskSampler | undefined,
  child: RunningProcess,
): HangWatch | undefined {
  const hangTimeoutMs = lease.task.policy.hangTimeoutMs;
  if (hangTimeoutMs === undefined) return undefined;
  const { logPath, eventsPath } = files;
  const gpuBusyAt = lease.gpuIds.length > 0 ? () => sampler?.gpuBusyAt ?? null : undefined;
  // Said in the log too: its tail is what failed_experiments.csv and the dashboard show.
  const stop = (): void => {
    const silent = formatDuration(hangTimeoutMs);
    try {
      appendNote(logPath, `labsweep: hung: no output, report or GPU use for ${silent}; stopping it`);
    } catch {
      // A log that cannot be written must not keep a hung task running: the report says it too.
    }
    child.terminate("hang");
  };
  const watch = new HangWatch({
    logPath,
    eventsPath,
    hangTimeoutMs,
    ...(gpuBusyAt && { gpuBusyAt }),
    onHang: stop,
  });
  const stopWatching = (): void => watch.stop();
  child.exited.then(stopWatching, stopWatching);
  return watch;
}

export interface HangWatchOptions {
  logPath: string;
  eventsPath: string;
  /** No sign of life for this long is a hang. */
  hangTimeoutMs: number;
  /** When the task's GPUs were last seen busy (performance.now()); null for CPU tasks. */
  gpuBusyAt?: () => number | null;
  onHang: () => void;
}

/**
 * Watches a running attempt for signs of life — its log growing, a line added to its events file,
 * its GPUs busy — and calls `onHang` once none was seen for `hangTimeoutMs` (a phase's
 * hang_timeout): a deadlocked data loader or a wedged collective otherwise holds its GPUs until
 * the timeout, or for ever.
 */
export class HangWatch {
  private lastLifeAt = performance.now();
  private readonly sizes: Array<number | null>;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly options: HangWatchOptions) {
    this.sizes = [sizeOf(options.logPath), sizeOf(options.eventsPath)];
    // Checked a few times per timeout, at most once a second: a stat of two files is cheap.
    const everyMs = Math.max(50, Math.min(1000, options.hangTimeoutMs / 4));
    this.timer = setInterval(() => this.check(), everyMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private check(): void {
    const now = performance.now();
    const sizes = [sizeOf(this.options.logPath), sizeOf(this.options.eventsPath)];
    // A file that cannot be read (null) counts as life: never stop a task for what we cannot see.
    const grew = sizes.some((size, index) => size === null || size !== this.sizes[index]);
    sizes.forEach((size, index) => {
      this.sizes[index] = size;
    });
    const busyAt = this.options.gpuBusyAt?.() ?? null;
    if (grew || (busyAt !== null && busyAt > this.lastLifeAt)) this.lastLifeAt = now;
    else if (now - this.lastLifeAt >= this.options.hangTimeoutMs) {
      this.stop();
      this.options.onHang();
    }
  }
}

/**
 * A file's size; -1 while it does not exist (a task may create its events file late); null when
 * it cannot be read for another reason (a permission changed under it).
 */
function sizeOf(path: string): number | null {
  try {
    return statSync(path).size;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ENOENT" ? -1 : null;
  }
}
