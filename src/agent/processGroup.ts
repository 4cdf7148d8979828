import { writeFileSync } from "node:fs";
import { PRIVATE_FILE_MODE } from "../files/privateFiles.js";
import { Launcher, sharedLauncher } from "./launcher.js";
import { isGone, listPids, readProcStat } from "./procfs.js";

/**
 * Why the agent stopped a task: its timeout, the agent's own SIGTERM (`preempt`: a scheduler's
 * time limit or preemption), the warning that its SLURM job's time limit is near (`time_limit`:
 * SIGUSR2, from `labsweep slurm`'s `--signal`) or Ctrl-C (`shutdown`), the coordinator taking the
 * attempt back (a cancel, a lost lease), or a hang (hang_timeout). Written as the stop file's one
 * line (`time_limit` as `preempt`, which it is to the task).
 */
export type StopReason = "timeout" | "shutdown" | "preempt" | "time_limit" | "abandoned" | "hang";

/** How a stop is made: the same for every reason. */
export interface StopSpec {
  /** Sent to the group first, so the task can save a checkpoint. (Default: SIGTERM) */
  signal?: NodeJS.Signals;
  /** Then SIGKILL after this long. */
  graceMs: number;
  /** Created just before the signal (LABSWEEP_STOP_FILE), for tasks that poll rather than listen. */
  stopPath?: string;
}

/**
 * A task's process group as the agent steers it: signals (held until its pid is known), the
 * timeout, and every stop: the stop file, the stop signal, and SIGKILL after the grace period,
 * which the task keeps even once the shell leading the group has died.
 */
export class ProcessGroup {
  /** Whether the timeout ended it. */
  timedOut = false;
  /** Why it was stopped; null while it was not. */
  stopReason: StopReason | null = null;
  /** Whether the group's leader has exited: its id may be free for reuse, so nothing is sent. */
  leaderGone = false;
  private pid = -1;
  private deferred: NodeJS.Signals | null = null;
  private killTimer: NodeJS.Timeout | undefined;
  private timeout: NodeJS.Timeout | undefined;
  private graceDeadline = 0;

  constructor(
    private readonly stop: StopSpec,
    private readonly timeoutMs: number | null,
  ) {}

  /** The leader is running as `pid`: the timeout starts, and a stop asked for meanwhile is made. */
  started(pid: number): void {
    this.pid = pid;
    this.armTimeout();
    if (this.deferred) {
      this.writeStopFile();
      this.signal(this.deferred);
    }
  }

  /** The stop file, the stop signal to the group, SIGKILL after the grace period. */
  terminate(reason: StopReason): void {
    // After the leader's exit the group is being cleaned up (or gone, its id free for reuse).
    if (this.killTimer || this.leaderGone) return;
    this.stopReason = reason;
    // Not started yet: the file is written when the signal is delivered, after the attempt's
    // files are (writing them removes a stale stop file).
    if (this.pid > 0) this.writeStopFile();
    this.signal(this.stop.signal ?? "SIGTERM");
    this.graceDeadline = performance.now() + this.stop.graceMs;
    this.killTimer = setTimeout(() => this.signal("SIGKILL"), this.stop.graceMs);
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
    // Whatever the task left running in its group (a data loader, a stray server) goes too: the
    // launcher kills it where it runs (usually nobody is left, and Node makes an ESRCH error of
    // that, ~20 µs of the agent's thread per task); without a launcher, the agent does.
    if (pid > 0 && !(Launcher.available() && sharedLauncher().forget(pid))) this.signal("SIGKILL");
  }

  private writeStopFile(): void {
    if (!this.stop.stopPath) return;
    try {
      // The stop file's words are a contract with tasks (docs/task-protocol.md): to a task, its
      // job's time limit is one more preemption.
      const word = this.stopReason === "time_limit" ? "preempt" : (this.stopReason ?? "stop");
      writeFileSync(this.stop.stopPath, `${word}\n`, { mode: PRIVATE_FILE_MODE });
    } catch {
      // The signal is the stop; the file only tells tasks that poll. A state dir that cannot be
      // written fails the next attempt's files anyway, saying why: never block the stop on it.
    }
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
      this.terminate("timeout");
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
