/**
 * How many agent jobs to submit or cancel, from one look at the queue: pure, so every case of
 * the automatic allocator (`serve --slurm`) is a table of inputs and answers.
 */

/** One of our allocations as SLURM shows it, and whether its agent has connected. */
export interface JobView {
  /** The array element's id, `JOBID_INDEX`. */
  id: string;
  /** `pending` (queued, held, requeued), `running` (configuring or running), `ending` (completing). */
  phase: "pending" | "running" | "ending";
  connected: boolean;
}

export interface QueueView {
  /** Tasks an agent with room could lease now. */
  claimable: number;
  /** Free slots of connected agents that are waiting for work. */
  idleSlots: number;
  /** The sweep has finished: nothing more will be leased. */
  finished: boolean;
  jobs: JobView[];
}

export interface AllocationLimits {
  /** Never more allocations (pending or running) at once. */
  maxJobs: number;
  /** Keep at least this many while the sweep is unfinished, even when no task waits. */
  minJobs: number;
  /** Tasks one allocation's agent runs at once. */
  slotsPerJob: number;
}

export interface AllocationStep {
  submit: number;
  /** Pending allocations no longer needed, newest first. */
  cancel: string[];
}

/** Most elements submitted in one array: a burst of thousands could flood a site's scheduler. */
export const MAX_PER_SUBMISSION = 16;

/**
 * Submits while claimable tasks exceed what connected and queued agents can take: idle slots of
 * connected agents, and the slots of allocations whose agent has not connected yet (pending, or
 * running and starting). Cancels pending allocations the queue no longer needs; a running one
 * ends by itself (its agent's `--idle-exit`). Never above `maxJobs`, never below `minJobs` while
 * the sweep is unfinished; once it has finished, pending allocations are cancelled.
 */
export function planAllocation(view: QueueView, limits: AllocationLimits): AllocationStep {
  const live = view.jobs.filter((job) => job.phase !== "ending");
  const pending = live.filter((job) => job.phase === "pending");
  if (view.finished) return { submit: 0, cancel: pending.map((job) => job.id).reverse() };
  const coming = live.filter((job) => !job.connected).length;
  const supply = coming * limits.slotsPerJob + view.idleSlots;
  const deficit = view.claimable - supply;
  let submit = deficit > 0 ? Math.ceil(deficit / limits.slotsPerJob) : 0;
  submit = Math.max(submit, limits.minJobs - live.length);
  submit = Math.max(0, Math.min(submit, limits.maxJobs - live.length, MAX_PER_SUBMISSION));
  if (submit > 0 || deficit >= 0) return { submit, cancel: [] };
  // More slots on their way than tasks waiting: whole pending allocations beyond the need go.
  const spare = Math.floor(-deficit / limits.slotsPerJob);
  const removable = Math.min(spare, pending.length, Math.max(0, live.length - limits.minJobs));
  return {
    submit: 0,
    cancel: pending
      .slice(pending.length - removable)
      .map((job) => job.id)
      .reverse(),
  };
}
