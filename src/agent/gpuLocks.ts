import { chmodSync, linkSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { GpuInfo } from "./gpuProbe.js";

/** Where agents on one host keep their GPU locks. (Default: /tmp/labsweep-gpu-locks) */
export function gpuLockDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.LABSWEEP_GPU_LOCK_DIR || "/tmp/labsweep-gpu-locks";
}

/** A lock file held by this process; `release` removes it if it is still ours. */
export interface HeldLock {
  path: string;
  release(): void;
}

export type LockAttempt = { held: HeldLock } | { owner: number };

/** A takeover taking longer than this was abandoned by a process that died mid-way. */
const TAKEOVER_STALE_MS = 10_000;

/**
 * Takes a lock file holding this process's pid, atomically: the pid is written to a private
 * file first and hard-linked to `path`, which fails when the lock exists, so no reader ever sees
 * an empty lock. A lock whose pid is dead is stale and taken over; the takeover runs under a
 * second exclusive file, so two processes finding the same stale lock cannot both end up holding
 * it (one could otherwise remove the lock the other had just taken). Returns the live owner's pid
 * when the lock is someone else's.
 */
export function takePidLock(path: string): LockAttempt {
  for (let round = 0; round < 50; round++) {
    if (linkPidFile(path)) return { held: heldLock(path) };
    const owner = readOwner(path);
    if (owner === "gone") continue; // released while we looked: try again
    if (owner !== process.pid && isAlive(owner)) return { owner };
    if (owner === process.pid) return { held: heldLock(path) };
    // Stale: its owner died. Take it over under the takeover file, re-checking inside.
    const takeover = `${path}.takeover`;
    if (!linkPidFile(takeover)) {
      removeIfStale(takeover);
      sleepMs(5);
      continue;
    }
    try {
      if (readOwner(path) === owner) rmSync(path, { force: true });
    } finally {
      rmSync(takeover, { force: true });
    }
  }
  throw new Error(`could not take the lock ${path}: it keeps changing hands`);
}

export interface GpuLockResult {
  /** The GPUs this process now holds, in the order asked. */
  locked: GpuInfo[];
  /** GPUs asked for but held by another live process. */
  busy: Array<{ gpu: GpuInfo; owner: number }>;
  /** Removes every lock taken (also done at process exit). */
  release(): void;
}

/**
 * Locks GPUs by UUID (host-wide, `<dir>/<uuid>.lock`), so two agents on one machine never share
 * one. Takes GPUs from `candidates` in order until `want` are held; GPUs other live processes
 * hold are skipped. The locks go when `release` is called or the process exits; a lock left by a
 * killed process (its pid dead) is taken over by the next agent.
 */
export function lockGpus(
  candidates: GpuInfo[],
  options: { dir?: string; want?: number } = {},
): GpuLockResult {
  const want = options.want ?? candidates.length;
  if (candidates.length === 0 || want <= 0) return { locked: [], busy: [], release: () => undefined };
  const dir = options.dir ?? gpuLockDir();
  ensureSharedDir(dir);
  const held: HeldLock[] = [];
  const locked: GpuInfo[] = [];
  const busy: GpuLockResult["busy"] = [];
  const release = (): void => {
    for (const lock of held.splice(0)) lock.release();
    process.off("exit", release);
  };
  process.on("exit", release);
  try {
    for (const gpu of candidates) {
      if (locked.length >= want) break;
      const attempt = takePidLock(join(dir, `${safeName(gpu.uuid)}.lock`));
      if ("held" in attempt) {
        held.push(attempt.held);
        locked.push(gpu);
      } else busy.push({ gpu, owner: attempt.owner });
    }
  } catch (error) {
    release();
    throw error;
  }
  return { locked, busy, release };
}

function heldLock(path: string): HeldLock {
  let released = false;
  return {
    path,
    release() {
      if (released) return;
      released = true;
      // Never remove a lock another process has taken over (after we were thought dead).
      if (readOwner(path) === process.pid) rmSync(path, { force: true });
    },
  };
}

/** Creates `path` holding our pid, atomically; false when it already exists. */
function linkPidFile(path: string): boolean {
  const temp = `${path}.${process.pid}.tmp`;
  writeFileSync(temp, `${process.pid}\n`, { mode: 0o644 });
  try {
    linkSync(temp, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  } finally {
    rmSync(temp, { force: true });
  }
}

/** The lock's pid; 0 for unreadable content (treated as dead), "gone" when the file vanished. */
function readOwner(path: string): number | "gone" {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return "gone";
    throw error;
  }
  const pid = Number(text.trim().split(/\s+/)[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : 0;
}

/** A takeover file left by a process that died mid-takeover (microseconds of work) is removed. */
function removeIfStale(takeover: string): void {
  try {
    const owner = readOwner(takeover);
    if (owner === "gone") return;
    if (!isAlive(owner) || Date.now() - statSync(takeover).mtimeMs > TAKEOVER_STALE_MS)
      rmSync(takeover, { force: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
}

/** Whether a process with this pid exists (EPERM: it does, but belongs to another user). */
export function isAlive(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

// Agents of every user on the host share the directory: world-writable and sticky, like /tmp.
function ensureSharedDir(dir: string): void {
  // The umask trims the mode mkdir sets; only the creator may (and needs to) widen it.
  if (mkdirSync(dir, { recursive: true, mode: 0o1777 }) !== undefined) chmodSync(dir, 0o1777);
}

function safeName(uuid: string): string {
  return uuid.replace(/[^A-Za-z0-9._-]/g, "_");
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
