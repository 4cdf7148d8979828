import type { StopReason } from "./processGroup.js";
import type { ProcessExit } from "./runProcess.js";

/** Why an agent stops all its running tasks at once: the stop reasons that are the agent's own. */
export type Termination = Extract<StopReason, "preempt" | "time_limit" | "shutdown">;

/**
 * How long before its agent's own stop a task may die of a signal and still be taken for stopped
 * by it: the two copies of one signal arrive microseconds apart, the agent's handler runs on its
 * next turn of the event loop.
 */
const SHARED_SIGNAL_MS = 500;

/**
 * The agent's own stop, as its tasks' exits see it. A scheduler stops a job by signalling every
 * process in it at once (SLURM's scancel and time limit, systemd's control-group kill), so a task
 * may die of its copy of SIGTERM before the agent has handled its own: the agent never stopped
 * it, and the attempt would be recorded as failed, a retry spent, for the scheduler's doing.
 */
export class AgentTermination {
  private why: Termination | null = null;
  private readonly waiting = new Set<() => void>();

  /** The agent stops its tasks, for `why` (the first reason stays). */
  begin(why: Termination): void {
    this.why ??= why;
    for (const wake of this.waiting) wake();
    this.waiting.clear();
  }

  /**
   * `exit` as the agent's stop when the task died of a signal (or a shell said so: code > 128)
   * while its agent was stopping, or within SHARED_SIGNAL_MS before it; else `exit` itself.
   */
  async attribute(exit: ProcessExit): Promise<ProcessExit> {
    const diedOfSignal = exit.signal !== null || (exit.exitCode ?? 0) > 128;
    if (exit.stopped || exit.timedOut || !diedOfSignal) return exit;
    if (this.why === null) await this.stopWithin(SHARED_SIGNAL_MS);
    return this.why === null ? exit : { ...exit, stopped: true, stopReason: this.why };
  }

  private stopWithin(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiting.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiting.add(done);
    });
  }
}
