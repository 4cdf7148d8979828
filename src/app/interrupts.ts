import type { Termination } from "../agent/termination.js";

/** What a Ctrl-C stops: first new work, then what runs. */
export interface Interruptible {
  stopLeasing(): void;
  /**
   * `preempt`: the process was sent SIGTERM (a scheduler's time limit or preemption);
   * `time_limit`: SIGUSR2, the warning that its SLURM job's time limit is near.
   */
  terminateRunning(why: Termination): void;
}

/** What to tell the user at each stage. */
export interface InterruptNotes {
  /** First Ctrl-C: no new tasks, running ones finish. */
  stopping(): void;
  /** Second Ctrl-C, or SIGTERM: running tasks get SIGTERM, then SIGKILL after the grace period. */
  terminating(): void;
  /**
   * SIGUSR2, which `labsweep slurm`'s `#SBATCH --signal=B:USR2@N` sends the agent N seconds before
   * its job's time limit. Without this note the process does not listen for SIGUSR2. (Default: none)
   */
  timeLimit?(): void;
}

/**
 * The two-stage Ctrl-C of `labsweep run` and `labsweep agent`, in one place: the first SIGINT
 * stops taking tasks and lets running ones finish; a second one, or any SIGTERM, terminates
 * them. With `notes.timeLimit`, SIGUSR2 terminates them too, as the job's time limit (which a
 * later SIGTERM, SLURM's at the limit itself, does not change). The target may come later (an
 * agent exists once its machine is probed): it is then told at once what was asked meanwhile.
 * `dispose` removes the handlers.
 */
export class Interrupts {
  private count = 0;
  private terminating: Termination | null = null;
  private target: Interruptible | null = null;

  constructor(private readonly notes: InterruptNotes) {
    process.on("SIGINT", this.onSignal);
    process.on("SIGTERM", this.onSignal);
    if (notes.timeLimit) process.on("SIGUSR2", this.onTimeLimit);
  }

  /** Signals received so far. */
  get received(): number {
    return this.count;
  }

  /** Whether SIGUSR2 said the job's time limit is near: the stop was the allocation's end. */
  get reachedTimeLimit(): boolean {
    return this.terminating === "time_limit";
  }

  attach(target: Interruptible): void {
    this.target = target;
    if (this.terminating) target.terminateRunning(this.terminating);
    else if (this.count > 0) target.stopLeasing();
  }

  dispose(): void {
    process.off("SIGINT", this.onSignal);
    process.off("SIGTERM", this.onSignal);
    process.off("SIGUSR2", this.onTimeLimit);
  }

  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.count++;
    if (signal === "SIGINT" && this.count === 1) {
      this.notes.stopping();
      this.target?.stopLeasing();
    } else if (this.terminating === "time_limit") {
      // SLURM's SIGTERM at the limit itself: the tasks are being stopped already, for that reason.
      this.target?.terminateRunning(this.terminating);
    } else {
      this.notes.terminating();
      // SIGTERM is how schedulers (a SLURM time limit, preemption, a shutdown) stop a job: its
      // tasks are preempted, resumed from their checkpoints. A second Ctrl-C is the user's stop.
      this.terminating = signal === "SIGTERM" ? "preempt" : "shutdown";
      this.target?.terminateRunning(this.terminating);
    }
  };

  private readonly onTimeLimit = (): void => {
    this.count++;
    // Already stopping for SIGTERM (scancel, preemption) or Ctrl-C: that is why it ends.
    if (this.terminating !== null) return;
    this.notes.timeLimit?.();
    this.terminating = "time_limit";
    this.target?.terminateRunning(this.terminating);
  };
}
