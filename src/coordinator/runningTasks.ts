import { hostname } from "node:os";
import type { RunningTask } from "../ledger/taskCounts.js";

/** Workers of `labsweep run`'s in-process agent are named so; remote agents never are. */
export const LOCAL_WORKER_PREFIX = "local-";

/**
 * What a task the ledger calls running really is, for `status`:
 * - `running`: its process runs (or may: a remote agent's, or a run on another host);
 * - `nextUp`: leased ahead by a `labsweep run` and waiting for a slot, not yet started;
 * - `orphaned`: its `labsweep run` on this host is gone (kill -9): nothing runs it, and the next
 *   run requeues it.
 * Remote agents report a pid only after a task has run a while, so "not started" is told apart
 * for `run`'s own tasks only.
 */
export type RunningKind = "running" | "nextUp" | "orphaned";

export function classifyRunning(
  task: Pick<RunningTask, "worker" | "started">,
  isAlive: (pid: number) => boolean = processAlive,
  thisHost: string = hostname(),
): RunningKind {
  const run = localRunOf(task.worker);
  if (!run) return "running";
  if (run.host === thisHost && !isAlive(run.pid)) return "orphaned";
  return task.started ? "running" : "nextUp";
}

/** The host and pid of the `labsweep run` a local worker name (`local-HOST-PID`) belongs to. */
function localRunOf(worker: string): { host: string; pid: number } | null {
  if (!worker.startsWith(LOCAL_WORKER_PREFIX)) return null;
  const rest = worker.slice(LOCAL_WORKER_PREFIX.length);
  const dash = rest.lastIndexOf("-");
  const pid = Number(rest.slice(dash + 1));
  if (dash < 0 || !Number.isInteger(pid) || pid <= 0) return null;
  return { host: rest.slice(0, dash), pid };
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, under another user.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
