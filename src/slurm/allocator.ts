import { mkdirSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { type AllocationLimits, type JobView, planAllocation } from "./allocationPlan.js";
import { phaseOf, type QueuedJob } from "./queue.js";
import { writeFileAtomically } from "./submit.js";

/** What the allocator needs from the coordinator and from SLURM. */
export interface AllocatorPort {
  /** The coordinator's side: tasks waiting, idle slots, and the SLURM elements whose agents connected. */
  look(): Promise<{
    claimable: number;
    idleSlots: number;
    finished: boolean;
    connected: ReadonlySet<string>;
  }>;
  /** Submits `count` agents as one job array; its job id. */
  submit(count: number): Promise<string>;
  /** Our elements in SLURM's queue, of these array job ids. */
  queued(arrayIds: ReadonlySet<string>): Promise<QueuedJob[]>;
  cancel(ids: string[]): Promise<void>;
  /** One line each: what the allocator did. */
  say(message: string): void;
}

export interface AllocatorOptions extends AllocationLimits {
  /** Where the allocations are kept across coordinator restarts (JSON). */
  stateFile: string;
  /** How often the queue is looked at. (Default: 5 s) */
  everyMs?: number;
  now?: () => number;
}

/** One allocation as `labsweep agents`, `status` and the dashboard show it. */
export interface AllocationView {
  id: string;
  state: string;
  reason: string;
  connected: boolean;
  submittedAt: number;
}

/** The allocator's state, for the status report, `labsweep agents` and the dashboard. */
export interface AllocationReport {
  maxJobs: number;
  minJobs: number;
  slotsPerJob: number;
  jobs: AllocationView[];
  /** Allocation stopped after failures in a row, until `labsweep slurm --resume-alloc`. */
  paused: { reason: string; since: number } | null;
  /** Failures in a row (submissions refused, allocations gone before their agent connected). */
  failures: number;
  /** While backing off: when the next submission may go. */
  retryAt: number | null;
}

interface Tracked extends AllocationView {
  everConnected: boolean;
  cancelled: boolean;
}

/** Failures in a row that pause allocation. */
export const PAUSE_AFTER_FAILURES = 3;
const BACKOFF_MS = 5000;
const MAX_BACKOFF_MS = 300_000;

/**
 * `serve --slurm`: submits agent jobs while claimable tasks exceed what connected and queued
 * agents can take (allocationPlan.ts), cancels pending ones the queue no longer needs, and stops
 * when the sweep is done. Submissions that fail back off; after PAUSE_AFTER_FAILURES in a row
 * (including allocations that ended before their agent ever connected: a broken script or
 * environment) allocation pauses, with the reason, until `resume()`.
 */
export class SlurmAllocator {
  private readonly jobs = new Map<string, Tracked>();
  private paused: AllocationReport["paused"] = null;
  private failures = 0;
  private retryAt: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;
  private readonly now: () => number;
  private saved = "";

  constructor(
    private readonly port: AllocatorPort,
    private readonly options: AllocatorOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.load();
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.options.everyMs ?? 5000);
    this.timer.unref();
    void this.tick();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.ticking;
  }

  /** `labsweep slurm --resume-alloc`: allocation goes on, its failure count cleared. */
  resume(): void {
    if (this.paused) this.port.say("allocation resumed");
    this.paused = null;
    this.failures = 0;
    this.retryAt = null;
    this.save();
    void this.tick();
  }

  report(): AllocationReport {
    const { maxJobs, minJobs, slotsPerJob } = this.options;
    const jobs = [...this.jobs.values()].map(({ id, state, reason, connected, submittedAt }) => ({
      id,
      state,
      reason,
      connected,
      submittedAt,
    }));
    const { paused, failures, retryAt } = this;
    return { maxJobs, minJobs, slotsPerJob, jobs, paused, failures, retryAt };
  }

  /** One look at the queue and what it calls for; never two at once, never throws. */
  tick(): Promise<void> {
    this.ticking ??= this.step()
      .catch((error: unknown) => this.port.say(`allocation: ${describe(error)}`))
      .finally(() => {
        this.ticking = null;
      });
    return this.ticking;
  }

  private async step(): Promise<void> {
    if (this.jobs.size > 0) this.follow(await this.port.queued(this.arrayIds()));
    const look = await this.port.look();
    for (const job of this.jobs.values()) {
      job.connected = look.connected.has(job.id);
      if (job.connected && !job.everConnected) {
        job.everConnected = true;
        this.failures = 0;
      }
    }
    const views: JobView[] = [...this.jobs.values()].map((job) => ({
      id: job.id,
      phase: phaseOf(job.state),
      // One that connected and left will not come back: it is no supply.
      connected: job.everConnected,
    }));
    const step = planAllocation({ ...look, jobs: views }, this.options);
    if (step.cancel.length > 0) await this.cancel(step.cancel);
    if (step.submit > 0 && !this.paused && (this.retryAt === null || this.now() >= this.retryAt))
      await this.submit(step.submit);
    this.save();
  }

  /** Takes in SLURM's view of our elements; those gone from the queue are forgotten. */
  private follow(queued: QueuedJob[]): void {
    const seen = new Map(queued.map((job) => [job.id, job]));
    for (const [id, job] of this.jobs) {
      const now = seen.get(id);
      if (now) {
        job.state = now.state;
        job.reason = now.reason;
        continue;
      }
      this.jobs.delete(id);
      if (!job.everConnected && !job.cancelled)
        this.failed(`allocation ${id} ended before its agent connected (see its log in the --output dir)`);
    }
  }

  private async cancel(ids: string[]): Promise<void> {
    await this.port.cancel(ids);
    for (const id of ids) {
      const job = this.jobs.get(id);
      if (job) job.cancelled = true;
    }
    this.port.say(
      `cancelled ${ids.length} pending allocation(s) the queue no longer needs: ${ids.join(" ")}`,
    );
  }

  private async submit(count: number): Promise<void> {
    let arrayId: string;
    try {
      arrayId = await this.port.submit(count);
    } catch (error) {
      this.failed(`submission failed: ${describe(error)}`);
      return;
    }
    this.retryAt = null;
    const submittedAt = this.now();
    for (let index = 0; index < count; index++) {
      const id = `${arrayId}_${index}`;
      this.jobs.set(id, {
        id,
        state: "PENDING",
        reason: "None",
        connected: false,
        submittedAt,
        everConnected: false,
        cancelled: false,
      });
    }
    this.port.say(`submitted ${count} agent allocation(s): job array ${arrayId}`);
  }

  private failed(why: string): void {
    this.failures++;
    const backoff = Math.min(MAX_BACKOFF_MS, BACKOFF_MS * 2 ** (this.failures - 1));
    this.retryAt = this.now() + backoff;
    if (this.failures >= PAUSE_AFTER_FAILURES && !this.paused) {
      this.paused = { reason: why, since: this.now() };
      this.port.say(
        `allocation paused after ${this.failures} failures in a row: ${why} — fix it, then: labsweep slurm --resume-alloc`,
      );
    } else this.port.say(`${why}; trying again in ${Math.round(backoff / 1000)} s`);
  }

  private arrayIds(): Set<string> {
    return new Set([...this.jobs.keys()].map((id) => id.split("_")[0] as string));
  }

  /** The allocations a previous coordinator made: their agents will connect to this one. */
  private load(): void {
    let saved: { jobs?: Tracked[]; paused?: AllocationReport["paused"]; failures?: number };
    try {
      saved = JSON.parse(readFileSync(this.options.stateFile, "utf8"));
    } catch {
      return; // none yet (or unreadable: start afresh; SLURM's queue is the truth anyway)
    }
    for (const job of saved.jobs ?? []) if (typeof job.id === "string") this.jobs.set(job.id, job);
    this.paused = saved.paused ?? null;
    this.failures = saved.failures ?? 0;
  }

  /** The report and what a restarted coordinator needs, for `status` and `agents` to read too. */
  private save(): void {
    mkdirSync(dirname(this.options.stateFile), { recursive: true });
    const text = JSON.stringify({ ...this.report(), jobs: [...this.jobs.values()] }, null, 1);
    if (text === this.saved) return;
    this.saved = text;
    writeFileAtomically(this.options.stateFile, `${text}\n`, 0o600);
  }
}

/** Where `serve --slurm` keeps its allocations in the state dir. */
export const ALLOCATIONS_FILE = "slurm-allocations.json";

/** The allocator's report as `serve --slurm` last saved it in `file`, or null if there is none. */
export function readAllocationReport(file: string): AllocationReport | null {
  try {
    const saved = JSON.parse(readFileSync(file, "utf8")) as AllocationReport;
    return Array.isArray(saved.jobs) ? saved : null;
  } catch {
    return null;
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
