import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ensurePrivateDir, PRIVATE_FILE_MODE } from "../files/privateFiles.js";
import { tryExclusiveLock } from "../files/processLock.js";

/** The lock file: an empty SQLite database whose exclusive lock the running process holds. */
export const LOCK_FILE = "run.lock";
/** Beside it, the holder's pid, for the message a second process gets. */
const PID_FILE = "run.lock.pid";

/** Another process holds the state dir. */
export class StateLockedError extends Error {
  override name = "StateLockedError";
}

/**
 * One coordinator per state dir: a second `labsweep run` on the same ledger would hand tasks out
 * twice. A kernel lock (see `tryExclusiveLock`), so two processes starting at once cannot both
 * take it, and a holder killed by SIGKILL leaves nothing stale behind. Returns the release.
 */
export function acquireStateLock(stateDir: string): () => void {
  ensurePrivateDir(stateDir);
  const lock = tryExclusiveLock(join(stateDir, LOCK_FILE));
  const pidPath = join(stateDir, PID_FILE);
  if (!lock) {
    const owner = readPid(pidPath);
    throw new StateLockedError(
      `another labsweep run holds ${stateDir}${owner ? ` (pid ${owner})` : ""}; watch it with \`labsweep status\` or stop it first`,
    );
  }
  // Written only while holding the lock; a stale one (from a killed holder) is overwritten here.
  writeFileSync(pidPath, `${process.pid}\n`, { mode: PRIVATE_FILE_MODE });
  return () => {
    // The pid file goes first, while the lock still says it is ours to remove. The lock file
    // stays: unlinking it would let a newcomer lock a new file while a late opener holds the old.
    rmSync(pidPath, { force: true });
    lock.release();
  };
}

/**
 * Whether a `labsweep run` or `serve` holds the state dir now, without taking its lock (a reader
 * that took it, even for a moment, could make a starting run fail): the pid it wrote, if that
 * process is alive. A holder killed by SIGKILL leaves its pid file behind; its pid is dead then.
 */
export function stateLockHeld(stateDir: string): boolean {
  const pid = readPid(join(stateDir, PID_FILE));
  if (pid === null) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: alive, another user's process; ESRCH: gone.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function readPid(path: string): number | null {
  try {
    const pid = Number(readFileSync(path, "utf8").trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
  } catch (error) {
    // Absent: the holder has not written it yet, or it is shutting down.
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}
