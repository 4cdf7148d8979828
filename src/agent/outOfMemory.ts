import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { oomKillCount } from "./procfs.js";

/**
 * Whether an attempt ran out of memory: a GPU framework's out-of-memory message in the tail of
 * its log, or the kernel's OOM killer (its kill count is procfs.ts `oomKillCount`, read as the
 * task starts and ends). The one table of messages labsweep recognises.
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
    const size = fstatSync(fd).size;
    const length = Math.min(size, OOM_TAIL_BYTES);
    const buffer = Buffer.alloc(length);
    const read = readSync(fd, buffer, 0, length, size - length);
    // latin1 maps every byte to one character: binary output cannot break the decoding, and the
    // messages are ASCII.
    return oomMessageIn(buffer.toString("latin1", 0, read));
  } catch {
    return null; // a log that cannot be read (a directory in its place) shows nothing; the failure stands
  } finally {
    closeSync(fd);
  }
}

let lastCount: { at: number; count: number | null } | null = null;

/**
 * The OOM kill count at most a second old, for a task that starts: a busy agent starts hundreds
 * a second. An older count only widens the window a rise is looked for in, never hides one.
 */
export function recentOomKillCount(now = performance.now()): number | null {
  if (lastCount === null || now - lastCount.at > 1000) lastCount = { at: now, count: oomKillCount() };
  return lastCount.count;
}

/**
 * How far the OOM kill count rose since `before`, read only for an exit that a SIGKILL could
 * have been the OOM killer's (undefined otherwise); null when unreadable.
 */
export function oomKillsSince(
  before: number | null,
  exit: { exitCode: number | null; signal: string | null },
): number | null | undefined {
  if (!killedBySigkill(exit)) return undefined;
  const after = before === null ? null : oomKillCount();
  return after === null ? null : after - (before as number);
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
