/** What a Ctrl-C stops: first new work, then what runs. */
export interface Interruptible {
  stopLeasing(): void;
  /** `preempt`: the process was sent SIGTERM (a scheduler's time limit or preemption). */
  terminateRunning(why: "preempt" | "shutdown"): void;
}

/** What to tell the user at each stage. */
export interface InterruptNotes {
  /** First Ctrl-C: no new tasks, running ones finish. */
  stopping(): void;
  /** Second Ctrl-C, or SIGTERM: running tasks get SIGTERM, then SIGKILL after the grace period. */
  terminating(): void;
}

/**
 * The two-stage Ctrl-C of `labsweep run` and `labsweep agent`, in one place: the first SIGINT
 * stops taking tasks and lets running ones finish; a second one, or any SIGTERM, terminates
 * them. The target may come later (an agent exists once its machine is probed): it is then told
 * at once what was asked meanwhile. `dispose` removes the handlers.
 */
export class Interrupts {
  private count = 0;
  private terminating: "preempt" | "shutdown" | null = null;
  private target: Interruptible | null = null;

  constructor(private readonly notes: InterruptNotes) {
    process.on("SIGINT", this.onSignal);
    process.on("SIGTERM", this.onSignal);
  }

  /** Signals received so far. */
  get received(): number {
    return this.count;
  }

  attach(target: Interruptible): void {
    this.target = target;
    if (this.terminating) target.terminateRunning(this.terminating);
    else if (this.count > 0) target.stopLeasing();
  }

  dispose(): void {
    process.off("SIGINT", this.onSignal);
    process.off("SIGTERM", this.onSignal);
  }

  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.count++;
    if (signal === "SIGINT" && this.count === 1) {
      this.notes.stopping();
      this.target?.stopLeasing();
    } else {
      this.notes.terminating();
      // SIGTERM is how schedulers (a SLURM time limit, preemption, a shutdown) stop a job: its
      // tasks are preempted, resumed from their checkpoints. A second Ctrl-C is the user's stop.
      this.terminating = signal === "SIGTERM" ? "preempt" : "shutdown";
      this.target?.terminateRunning(this.terminating);
    }
  };
}
