import { closeSync, openSync, readFileSync, readSync, statSync } from "node:fs";

/**
 * Whether an attempt ran out of memory: a GPU framework's out-of-memory message in the tail of
 * its log, or the kernel's OOM killer. The one table of messages labsweep recognises.
 */

/**
 * Messages GPU frameworks print when an allocation fails, each as it appears in a log (matched
 * case-sensitively, as plain text): what a user would search for is what the report names.
 */
export const OOM_MESSAGES: readonly string[] = [
  // PyTorch (torch.cuda.OutOfMemoryError's text; older versions raise a RuntimeError with it).
  "CUDA out of memory",
  "torch.cuda.OutOfMemoryError",
  "torch.OutOfMemoryError",
  // PyTorch on ROCm and on Apple silicon.
  "HIP out of memory",
  "MPS backend out of memory",
  // JAX / XLA.
  "RESOURCE_EXHAUSTED: Out of memory",
  // The CUDA driver and runtime APIs (CuPy, Numba, TensorFlow's allocator, raw CUDA programs).
  "CUDA_ERROR_OUT_OF_MEMORY",
  "cudaErrorMemoryAllocation",
  "CUBLAS_STATUS_ALLOC_FAILED",
  // TensorFlow.
  "OOM when allocating tensor",
];

/**
 * How much of a log's end is searched: a traceback ends a crashed task's log, and reading a
 * bounded tail keeps a multi-gigabyte or binary log from costing more than the 64 KiB the failure
 * report already reads.
 */
export const OOM_TAIL_BYTES = 64 * 1024;

/** The message of OOM_MESSAGES that appears last in `text`, or null. */
export function oomMessageIn(text: string): string | null {
  let found: string | null = null;
  let at = -1;
  for (const message of OOM_MESSAGES) {
    const index = text.lastIndexOf(message);
    if (index > at) {
      at = index;
      found = message;
    }
  }
  return found;
}

/** The out-of-memory message in the last OOM_TAIL_BYTES of a log; null when none or unreadable. */
export function oomMessageInLog(logPath: string): string | null {
  let fd: number;
  try {
    fd = openSync(logPath, "r");
  } catch {
    return null; // no log (the command never started): nothing to recognise
  }
  try {
    const size = statSync(logPath).size;
    const length = Math.min(size, OOM_TAIL_BYTES);
    const buffer = Buffer.alloc(length);
    const read = readSync(fd, buffer, 0, length, size - length);
    // latin1 maps every byte to one character: binary output cannot break the decoding, and the
    // messages are ASCII.
    return oomMessageIn(buffer.toString("latin1", 0, read));
  } finally {
    closeSync(fd);
  }
}

/**
 * How many processes the kernel's OOM killer has killed, as far as this process can tell: its
 * cgroup's `oom_kill` count (cgroup v2 `memory.events`, found through /proc/self/cgroup, at
 * /sys/fs/cgroup or the hybrid layout's /sys/fs/cgroup/unified), else the host's
 * (`oom_kill` in /proc/vmstat, Linux 4.13+). Null where neither can be read.
 */
export function oomKillCount(): number | null {
  for (const path of eventFiles()) {
    const count = counterIn(path, /^oom_kill (\d+)$/m);
    if (count !== null) return count;
  }
  return null;
}

let cachedEventFiles: string[] | null = null;

/** Where the OOM kill count may be read, best first (read once: a process stays in its cgroup). */
function eventFiles(): string[] {
  if (cachedEventFiles) return cachedEventFiles;
  const files: string[] = [];
  try {
    const line = /^0::(.*)$/m.exec(readFileSync("/proc/self/cgroup", "utf8"));
    const group = line?.[1]?.trim();
    if (group !== undefined && !group.includes("..")) {
      const relative = group === "/" ? "" : group;
      for (const root of ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"])
        files.push(`${root}${relative}/memory.events`);
    }
  } catch {
    // No cgroup information (not Linux, or no procfs): only the host's count remains.
  }
  files.push("/proc/vmstat");
  cachedEventFiles = files;
  return files;
}

function counterIn(path: string, pattern: RegExp): number | null {
  try {
    const match = pattern.exec(readFileSync(path, "latin1"));
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

/** What ended an attempt that ran out of memory: the log's message, or the kernel. */
export type OomSignal = { source: "log"; message: string } | { source: "kernel" };

/**
 * Whether a failed attempt ran out of memory. A log message says so; a SIGKILL the agent did not
 * send (the exit's signal, or a shell's 137) counts as the kernel's OOM killer only when the
 * OOM kill count rose while the attempt ran (`oomKillsDuring`; null when unreadable).
 */
export function oomSignalOf(
  exit: { exitCode: number | null; signal: string | null },
  logPath: string,
  oomKillsDuring: number | null,
): OomSignal | null {
  const message = oomMessageInLog(logPath);
  if (message !== null) return { source: "log", message };
  if (killedBySigkill(exit) && oomKillsDuring !== null && oomKillsDuring > 0) return { source: "kernel" };
  return null;
}

/** Whether the process, or the command its shell ran, died of SIGKILL. */
export function killedBySigkill(exit: { exitCode: number | null; signal: string | null }): boolean {
  return exit.signal === "SIGKILL" || exit.exitCode === 128 + 9;
}

/** The report's wording of an out-of-memory end. */
export function oomError(signal: OomSignal): string {
  return signal.source === "log"
    ? `out of GPU memory (${signal.message})`
    : "killed by the kernel's OOM killer";
}
