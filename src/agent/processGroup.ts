import { Launcher, sharedLauncher } from "./launcher.js";
import { isGone, listPids, readProcStat } from "./procfs.js";

/**
 * A task's process group as the agent steers it: signals (held until its pid is known), the
 * timeout, and SIGTERM's grace period before SIGKILL, which the task keeps even once the shell
 * leading the group has died.
 */
export class ProcessGroup {
  /** Whether the timeout ended it. */
  timedOut = false;
  /** Whether the group's leader has exited: its id may be free for reuse, so nothing is sent. */
  leaderGone = false;
  private pid = -1;
  private deferred: NodeJS.Signals | null = null;
  private killTimer: NodeJS.Timeout | undefined;
  private timeout: NodeJS.Timeout | undefined;
  private graceDeadline = 0;

  constructor(
    private readonly graceMs: number,
    private readonly timeoutMs: number | null,
  ) {}

  /** The leader is running as `pid`: the timeout starts, and a signal sent meanwhile is delivered. */
  started(pid: number): void {
    this.pid = pid;
    this.armTimeout();
    if (this.deferred) this.signal(this.deferred);
  }

  /** SIGTERM to the group, SIGKILL after the grace period. */
  terminate(): void {
    // After the leader's exit the group is being cleaned up (or gone, its id free for reuse).
    if (this.killTimer || this.leaderGone) return;
    this.signal("SIGTERM");
    this.graceDeadline = performance.now() + this.graceMs;
    this.killTimer = setTimeout(() => this.signal("SIGKILL"), this.graceMs);
  }

  /** The leader exited: waits out a grace period under way, then kills what the task left. */
  async leaderExited(): Promise<void> {
    const pid = this.pid;
    this.leaderGone = true;
    clearTimeout(this.timeout);
    // Terminating (timeout or stop): the shell leading the group usually dies of SIGTERM at
    // once while the real task under it still handles it (saves a checkpoint); it keeps its
    // grace period, and is SIGKILLed only when that runs out.
    if (this.killTimer && pid > 0)
      await new Promise<void>((resolve) => awaitGroupExit(pid, this.graceDeadline, resolve));
    clearTimeout(this.killTimer);
    // Whatever the task left running in its group (a data loader, a stray server) goes too.
    if (pid > 0) this.signal("SIGKILL");
    if (pid > 0 && Launcher.available()) sharedLauncher().forget(pid);
  }

  private signal(signal: NodeJS.Signals): void {
    if (this.pid <= 0) {
      this.deferred = signal; // not started yet: delivered the moment its pid is known
      return;
    }
    try {
      process.kill(-this.pid, signal);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
    }
  }

  private armTimeout(): void {
    if (this.timeoutMs === null || this.leaderGone) return;
    this.timeout = setTimeout(() => {
      this.timedOut = true;
      this.terminate();
    }, this.timeoutMs);
  }
}

/** Calls `then` once no live process is left in the group, or at `deadline` (performance.now()). */
function awaitGroupExit(processGroup: number, deadline: number, then: () => void): void {
  const check = (): void => {
    if (!groupAlive(processGroup) || performance.now() >= deadline) then();
    else setTimeout(check, 25);
  };
  check();
}

/**
 * Whether a process of the group is still running. Zombies do not count: a child orphaned by the
 * shell is reaped by init whenever init gets to it, but is already dead.
 */
function groupAlive(processGroup: number): boolean {
  const pids = listPids();
  if (pids === null) {
    // No procfs: signal 0 tells whether the group has members (zombies included).
    try {
      process.kill(-processGroup, 0);
      return true;
    } catch {
      return false;
    }
  }
  for (const pid of pids) {
    const stat = readProcStat(pid); // null: exited while we looked
    if (stat !== null && stat.processGroup === processGroup && !isGone(stat)) return true;
  }
  return false;
}
