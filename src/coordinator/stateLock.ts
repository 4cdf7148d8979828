import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";

export const LOCK_FILE = "coordinator.lock";

/**
 * One coordinator per state dir: a second `labsweep run` on the same ledger would hand tasks
 * out twice. The lock file holds the owner's pid; a lock whose pid is gone (kill -9, power loss)
 * is stale and taken over.
 */
export function acquireStateLock(stateDir: string): () => void {
  mkdirSync(stateDir, { recursive: true });
  const path = join(stateDir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, "wx", 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => rmSync(path, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const owner = Number(readFileSync(path, "utf8").trim());
      if (owner > 0 && owner !== process.pid && isAlive(owner)) {
        throw new Error(
          `another labsweep (pid ${owner}) is running on ${stateDir}; watch it with \`labsweep status\` or stop it first`,
        );
      }
      rmSync(path, { force: true });
    }
  }
  throw new Error(`could not lock ${path}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
