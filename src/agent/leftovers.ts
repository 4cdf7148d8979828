import { environmentOf, listPids, readProcStat } from "./procfs.js";

/**
 * Kills what is left of a task started by an earlier incarnation of this agent (killed with
 * SIGKILL, so its process groups were not cleaned up). Only processes in that process group
 * whose environment carries the attempt's marker are killed, so a recycled pid or pgid never
 * takes an unrelated process down. Returns how many processes were killed. Linux only: elsewhere
 * there is no /proc and nothing is done.
 */
export function killLeftovers(processGroup: number, attemptId: number): number {
  const marker = `LABSWEEP_ATTEMPT_ID=${attemptId}`;
  let killed = 0;
  const pids = listPids();
  if (pids === null) return 0; // no procfs: nothing we can check safely
  for (const pid of pids) {
    if (pid === process.pid || readProcStat(pid)?.processGroup !== processGroup) continue;
    if (!environmentOf(pid).includes(marker)) continue;
    try {
      process.kill(pid, "SIGKILL");
      killed++;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
    }
  }
  return killed;
}

/** The environment variable every task carries, naming the state dir of the agent that ran it. */
export const STATE_DIR_MARKER = "LABSWEEP_STATE_DIR";

/**
 * Kills every process still carrying this state dir's marker: tasks of a previous incarnation
 * that died (SIGKILL, power loss) before it could stop them — also those whose pid it never
 * got to record. Call it only while holding the state dir's lock, before starting any task.
 * Returns how many processes were killed.
 */
export function killTasksOf(stateDir: string): number {
  const marker = `${STATE_DIR_MARKER}=${stateDir}`;
  const pids = listPids();
  if (pids === null) return 0; // no procfs: nothing we can check safely
  let killed = 0;
  for (const pid of pids) {
    if (pid === process.pid) continue;
    if (!environmentOf(pid).includes(marker)) continue;
    try {
      process.kill(pid, "SIGKILL");
      killed++;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
    }
  }
  return killed;
}
