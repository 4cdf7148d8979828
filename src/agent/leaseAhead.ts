import type { Capacity } from "../protocol/capacity.js";
import type { GitState, Lease } from "../protocol/interfaces.js";
import type { CoordinatorPort } from "./coordinatorPort.js";
import { fitsWithin, type Occupancy, type Running, times } from "./occupancy.js";
import type { RunningProcess } from "./runProcess.js";
import type { TaskFiles } from "./taskFiles.js";

/** A task's process, launched (or chained to start after another's) but not yet counted as running. */
export interface Launch {
  lease: Lease;
  process: RunningProcess;
  files: TaskFiles;
  /** Its process has started (a chained one: the launcher opened its gate). */
  started: boolean;
  /** The provenance of the code it runs, read as it was launched (AttemptSetup.provenance). */
  git: Promise<GitState | null>;
}

/**
 * A task leased ahead of a free slot. Where the launcher can chain, its process is already
 * queued there to start the moment the task before it exits (`launch`); otherwise it starts
 * from the loop. The first one held follows a running task (`follows`), a second one the first.
 */
interface Ahead {
  lease: Lease;
  launch?: Launch;
  follows?: Running;
}

/**
 * Tasks held ahead, when their processes can be chained, cover this much of the slots' work:
 * the lease that refills the chain has that long to come back (a round trip is a few ms, tens
 * on a loaded machine), and brings as many as have started meanwhile. At most MAX_CHAIN.
 */
const CHAIN_COVER_MS = 50;
const MAX_CHAIN = 8;

/** What the chain needs from the agent that holds it. */
export interface ChainHost {
  port: CoordinatorPort;
  occupancy: Occupancy;
  options: { agentId: string; host: string; leaseAheadBelowMs?: number; slots: unknown[] };
  stopping(): boolean;
  /** Writes a task's files and launches its process, chained after `after`'s. */
  launch(lease: Lease, after: RunningProcess): Launch;
  /** Counts a launched task as running. */
  adopt(launch: Launch): Running;
  /** Hands a leased task that never started back: pending again, no retry spent. */
  release(lease: Lease, error: string): void;
  survive(work: Promise<unknown>, what: string): void;
  wake(): void;
}

/**
 * The tasks an agent whose slots are all busy with short tasks leases ahead, so that a slot
 * that frees up starts its next task without a round trip to the coordinator.
 */
export class LeaseAheadChain {
  /** Tasks leased ahead, in the order they will start, each the moment a slot frees up. */
  private aheads: Ahead[] = [];
  /** Counts give-backs: a lease for the chain that comes back after one is given back too. */
  private epoch = 0;
  /** Chained tasks being taken back from the launcher (giveBack). */
  private withdrawing: Promise<void> | null = null;
  /** Wall times of the last few finished tasks, in ms: lease ahead only for short tasks. */
  private readonly recentWallMs: number[] = [];

  constructor(private readonly host: ChainHost) {}

  /** Tasks leased ahead that have not started: running in the ledger, waiting here. */
  get heldCount(): number {
    return this.aheads.filter((ahead) => !ahead.launch?.started).length;
  }

  /** The attempts held ahead, for heartbeats. */
  get attemptIds(): number[] {
    return this.aheads.map((ahead) => ahead.lease.attemptId);
  }

  /** Remembers how long a task ran: only short tasks are leased ahead. */
  recordWallMs(wallMs: number): void {
    this.recentWallMs.push(wallMs);
    if (this.recentWallMs.length > 5) this.recentWallMs.shift();
  }

  /** Starts the chain's head if it fits what is free now; true if it did. */
  startHead(start: (lease: Lease) => void): boolean {
    const ahead = this.aheads[0];
    if (!ahead || !this.host.occupancy.fitsNow(ahead.lease)) return false;
    this.aheads.shift();
    if (ahead.launch) {
      // Usually started by the launcher already, when the task it follows exited.
      ahead.launch.process.startNow();
      this.adoptHead(ahead.launch);
    } else start(ahead.lease);
    return true;
  }

  /**
   * What a lease for the free slots may take while a chained task waits to replace the task it
   * follows (Occupancy.besideChained).
   */
  besideChained(capacity: Capacity): Capacity {
    // Tasks chained behind the first take no more than it frees: only the first can need more.
    const first = this.aheads[0];
    const follows = first?.follows;
    if (!first?.launch || !follows) return capacity;
    return this.host.occupancy.besideChained(capacity, first.lease, follows);
  }

  /** Gives back the held attempts among `attemptIds` and those after them in the chain. */
  abandon(attemptIds: number[]): void {
    // Those after an abandoned one in the chain go back too: they were leased for its capacity.
    const first = this.aheads.findIndex((ahead) => attemptIds.includes(ahead.lease.attemptId));
    if (first >= 0) this.giveBack("the coordinator no longer assigns it to this agent", true, first);
  }

  /**
   * Hands the tasks held ahead (from the `from`th on) back: pending again, no retry spent.
   * Chained ones are first taken back from the launcher, the last first, so none is left waiting
   * for one taken back; one that started meanwhile is adopted as running, and stopped too when
   * `stop` (abandoned: the coordinator moved it on, or the agent is leaving).
   */
  giveBack(error: string, stop: boolean, from = 0): void {
    this.epoch++;
    const given = this.aheads.splice(from);
    if (given.length === 0) return;
    const settled = (async () => {
      for (const ahead of given.reverse()) {
        const launch = ahead.launch;
        if (!launch || (await launch.process.withdraw())) {
          this.host.release(ahead.lease, error);
          continue;
        }
        const running = this.host.adopt(launch);
        if (stop) {
          running.abandoned = true;
          running.process.terminate("abandoned");
        }
      }
    })();
    const previous = this.withdrawing;
    this.host.survive(settled, "could not hand back tasks held ahead");
    const both = Promise.all([previous, settled.catch(() => undefined)]).then(() => {
      if (this.withdrawing === both) this.withdrawing = null;
    });
    this.withdrawing = both;
  }

  /** Waits until tasks being given back are released or adopted. */
  async withdrawn(): Promise<void> {
    while (this.withdrawing) await this.withdrawing;
  }

  /**
   * The launcher started the head of the chain (the task before it exited): it runs from now on,
   * whatever the loop is waiting for (a long-polled lease for another slot, say), so it is
   * adopted at once and its end reported on time. Not found: the loop adopted it already, or it
   * is being given back (giveBack adopts it then).
   */
  chainedStarted(launch: Launch): void {
    if (this.aheads[0]?.launch !== launch) return;
    this.aheads.shift();
    this.adoptHead(launch);
    this.host.wake();
  }

  /** Adopts the chain's head, just taken off it: the task behind it now follows it. */
  private adoptHead(launch: Launch): void {
    const running = this.host.adopt(launch);
    const next = this.aheads[0];
    if (next) next.follows = running;
  }

  /**
   * With every slot busy running short tasks, leases the next task now, for the capacity the
   * longest-running task will free: when a slot frees up, its next task starts at once. Where
   * the launcher chains processes, the task is queued there behind that one, and more are held
   * behind it (CHAIN_COVER_MS of work), each leased for exactly what the one before will free; a
   * slot that frees up first takes the head of the chain. Only for short tasks, where a round
   * trip is a noticeable share of a slot's time; tasks held ahead wait at most about
   * CHAIN_COVER_MS (or one task's length), so no other agent starves for them. True if a task
   * was leased.
   */
  async leaseAhead(): Promise<boolean> {
    const { occupancy, options } = this.host;
    const belowMs = options.leaseAheadBelowMs ?? 2000;
    if (belowMs <= 0 || this.recentWallMs.length < 2) return false;
    const taskMs = median(this.recentWallMs);
    if (taskMs >= belowMs) return false;
    const oldest = [...occupancy.running.values()][0];
    if (!oldest) return false;
    const last = this.aheads.at(-1);
    if (last && !last.launch) return false;
    const depth = Math.min(
      MAX_CHAIN,
      Math.max(1, Math.ceil((CHAIN_COVER_MS * options.slots.length) / Math.max(taskMs, 0.1))),
    );
    // Held tasks the launcher has started already cover nothing.
    const want = last ? depth - this.heldCount : 1;
    if (want <= 0) return false;
    const epoch = this.epoch;
    const leases = await this.host.port.lease({
      agentId: options.agentId,
      host: options.host,
      // Several chained tasks run one after another in what the last held one frees: asked for
      // together, they get that much capacity each (each one is checked against it below).
      capacity: last ? times(occupancy.capacityFreedBy(last.lease), want) : occupancy.capacityWithout(oldest),
      max: want,
      // Answered at once: this request must not hold up the loop while a slot frees up.
      waitMs: 0,
    });
    if (leases.length === 0) return false;
    this.hold(leases, epoch, last, oldest);
    return true;
  }

  /** Queues leased `leases` behind `last` (or the `oldest` running task), or gives them back. */
  private hold(leases: Lease[], epoch: number, last: Ahead | undefined, oldest: Running): void {
    const { occupancy } = this.host;
    let previous = last;
    for (const lease of leases) {
      if (this.host.stopping() || this.epoch !== epoch) {
        // Stopped, or the chain was given back while the lease was on its way.
        this.host.release(lease, "stopped before it started");
        continue;
      }
      let ahead: Ahead | null = { lease };
      if (previous?.launch)
        ahead = fitsWithin(lease, occupancy.capacityFreedBy(previous.lease), occupancy.hasGpus)
          ? { lease, launch: this.host.launch(lease, previous.launch.process) }
          : null;
      // Queued in the launcher behind the task whose capacity it was leased for: it starts the
      // moment that one exits, without waiting for the exit to reach this loop.
      else if (oldest.process.chainable)
        ahead = { lease, launch: this.host.launch(lease, oldest.process), follows: oldest };
      if (!ahead) {
        this.host.release(lease, "it does not fit where the task before it in the chain runs");
        continue;
      }
      // The task it follows started while the lease was on its way: it follows that one running.
      if (this.aheads.length === 0 && previous)
        ahead.follows ??= occupancy.running.get(previous.lease.attemptId);
      this.aheads.push(ahead);
      previous = ahead;
    }
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}
