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

/** A task leased ahead of a free slot: where the launcher can chain, its process is queued there. */
interface Ahead {
  lease: Lease;
  launch?: Launch;
}

/**
 * The tasks held behind one running task (`follows`): the first starts the moment it exits, each
 * next one the moment the one before it exits. Where the launcher cannot chain, a lane holds one
 * task, which the loop starts when a slot frees up.
 */
interface Lane {
  follows: Running;
  aheads: Ahead[];
}

/**
 * The tasks held ahead cover about this much of every slot's work, in all: the leases that refill
 * the lanes have that long to come back (a round trip is a few ms, tens on a loaded machine), and
 * a sweep's last tasks are held from other agents no longer than that. Spread over the running
 * tasks, a lane each while there are enough (100 ms tasks: one behind every slot; 1 s tasks: one
 * lane), at most MAX_LANE behind each.
 */
const CHAIN_COVER_MS = 100;
const MAX_LANE = 4;

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

/** A lane to lengthen by `want` tasks, each fitting what the one before it frees. */
interface Want {
  lane: Lane;
  want: number;
}

/**
 * The tasks an agent whose slots are all busy with short tasks leases ahead, so that a slot
 * that frees up starts its next task without a round trip to the coordinator: a lane behind
 * every running task.
 */
export class LeaseAheadChain {
  private lanes: Lane[] = [];
  /** Counts give-backs: a lease for a lane that comes back after one is given back too. */
  private epoch = 0;
  /** Chained tasks being taken back from the launcher (giveBack). */
  private withdrawing: Promise<void> | null = null;
  /** Wall times of the last few finished tasks, in ms: lease ahead only for short tasks. */
  private readonly recentWallMs: number[] = [];

  constructor(private readonly host: ChainHost) {}

  /** Tasks leased ahead that have not started: running in the ledger, waiting here. */
  get heldCount(): number {
    let held = 0;
    for (const lane of this.lanes) for (const ahead of lane.aheads) if (!ahead.launch?.started) held++;
    return held;
  }

  /** Running tasks with tasks held behind them. */
  get laneCount(): number {
    return this.lanes.length;
  }

  /** The attempts held ahead, for heartbeats. */
  get attemptIds(): number[] {
    return this.lanes.flatMap((lane) => lane.aheads.map((ahead) => ahead.lease.attemptId));
  }

  /** Remembers how long a task ran: only short tasks are leased ahead. */
  recordWallMs(wallMs: number): void {
    this.recentWallMs.push(wallMs);
    if (this.recentWallMs.length > 5) this.recentWallMs.shift();
  }

  /**
   * Starts a lane's head if it fits what is free now; true if it did. The lane of a task that
   * has ended goes first: the launcher started its head in that slot already, and another lane's
   * head started there as well would be one task too many.
   */
  startHead(start: (lease: Lease) => void): boolean {
    const { occupancy } = this.host;
    const lane =
      this.lanes.find((candidate) => !occupancy.running.has(candidate.follows.lease.attemptId)) ??
      this.lanes.find((candidate) => occupancy.fitsNow((candidate.aheads[0] as Ahead).lease));
    const ahead = lane?.aheads[0];
    if (!lane || !ahead || !occupancy.fitsNow(ahead.lease)) return false;
    lane.aheads.shift();
    if (ahead.launch) {
      // Usually started by the launcher already, when the task it follows exited.
      ahead.launch.process.startNow();
      this.adoptHead(lane, ahead.launch);
    } else {
      this.lanes = this.lanes.filter((other) => other !== lane);
      start(ahead.lease);
    }
    return true;
  }

  /**
   * What a lease for the free slots may take while chained tasks wait to replace the tasks they
   * follow (Occupancy.besideChained): each lane's head, as the tasks behind it take no more than
   * it frees.
   */
  besideChained(capacity: Capacity): Capacity {
    let left = capacity;
    for (const lane of this.lanes) {
      const first = lane.aheads[0];
      if (first?.launch) left = this.host.occupancy.besideChained(left, first.lease, lane.follows);
    }
    return left;
  }

  /** Gives back the held attempts among `attemptIds` and those after them in their lanes. */
  abandon(attemptIds: number[]): void {
    // Those after an abandoned one in its lane go back too: they were leased for its capacity.
    const given: Ahead[][] = [];
    for (const lane of this.lanes) {
      const first = lane.aheads.findIndex((ahead) => attemptIds.includes(ahead.lease.attemptId));
      if (first >= 0) given.push(lane.aheads.splice(first));
    }
    if (given.length > 0) this.settle(given, "the coordinator no longer assigns it to this agent", true);
  }

  /**
   * Hands every task held ahead back: pending again, no retry spent. Chained ones are first
   * taken back from the launcher, each lane's last first, so none is left waiting for one taken
   * back; one that started meanwhile is adopted as running, and stopped too when `stop`
   * (abandoned: the coordinator moved it on, or the agent is leaving).
   */
  giveBack(error: string, stop: boolean): void {
    const given = this.lanes.map((lane) => lane.aheads);
    this.lanes = [];
    this.settle(given, error, stop);
  }

  /** Takes `given` (each a lane's tail, in order) back from the launcher and releases them. */
  private settle(given: Ahead[][], error: string, stop: boolean): void {
    this.epoch++;
    this.lanes = this.lanes.filter((lane) => lane.aheads.length > 0);
    if (given.every((aheads) => aheads.length === 0)) return;
    const settled = (async () => {
      for (const aheads of given)
        for (const ahead of aheads.reverse()) {
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
   * The launcher started a lane's head (the task before it exited): it runs from now on,
   * whatever the loop is waiting for (a long-polled lease for another slot, say), so it is
   * adopted at once and its end reported on time. Not found: the loop adopted it already, or it
   * is being given back (giveBack adopts it then).
   */
  chainedStarted(launch: Launch): void {
    const lane = this.lanes.find((candidate) => candidate.aheads[0]?.launch === launch);
    if (!lane) return;
    lane.aheads.shift();
    this.adoptHead(lane, launch);
    this.host.wake();
  }

  /** Adopts a lane's head, just taken off it: the lane now follows it. */
  private adoptHead(lane: Lane, launch: Launch): void {
    lane.follows = this.host.adopt(launch);
    if (lane.aheads.length === 0) this.lanes = this.lanes.filter((other) => other !== lane);
  }

  /**
   * With every slot busy running short tasks, leases tasks now for the capacity running tasks
   * will free: where the launcher chains processes, each is queued there behind a running task
   * (or the task held behind it), together covering CHAIN_COVER_MS of the slots' work, so the
   * moment a task exits its slot's next task starts, without the exit travelling to this loop
   * and a start travelling back. Without chaining, one task is held, started by the loop when a slot frees
   * up. Only for short tasks, where a round trip is a noticeable share of a slot's time; tasks
   * held ahead wait at most one task's length, and about CHAIN_COVER_MS of work is held in all,
   * so no other agent starves for them. True if a task was leased.
   */
  async leaseAhead(): Promise<boolean> {
    const { occupancy, options } = this.host;
    const belowMs = options.leaseAheadBelowMs ?? 2000;
    if (belowMs <= 0 || this.recentWallMs.length < 2) return false;
    const taskMs = median(this.recentWallMs);
    if (taskMs >= belowMs) return false;
    const oldest = [...occupancy.running.values()][0];
    if (!oldest) return false;
    if (!oldest.process.chainable) return this.holdOne(oldest);
    const held = Math.ceil((CHAIN_COVER_MS * options.slots.length) / Math.max(taskMs, 0.1));
    const lanes = Math.min(occupancy.running.size, held);
    const depth = Math.min(MAX_LANE, Math.ceil(held / lanes));
    let leased = false;
    for (const group of this.wants(lanes, depth)) if (await this.lengthen(group)) leased = true;
    return leased;
  }

  /**
   * The lanes to lengthen to `depth`, new ones (behind the oldest running tasks first) up to
   * `lanes` in all, grouped by what their last task frees (its GPUs and resources): one lease
   * asks for a group's tasks together.
   */
  private wants(lanes: number, depth: number): Want[][] {
    const groups = new Map<string, Want[]>();
    let count = this.lanes.length;
    for (const running of this.host.occupancy.running.values()) {
      let lane = this.lanes.find((candidate) => candidate.follows === running);
      if (!lane) {
        if (count >= lanes) continue;
        count++;
        lane = { follows: running, aheads: [] };
      }
      const last = lane.aheads.at(-1);
      if (last && !last.launch) continue;
      const want = depth - lane.aheads.filter((ahead) => !ahead.launch?.started).length;
      if (want <= 0) continue;
      const tail = (last ?? lane.follows).lease;
      const key = `${tail.gpuIds.join(",")} ${JSON.stringify(tail.task.policy.resources)}`;
      groups.set(key, [...(groups.get(key) ?? []), { lane, want }]);
    }
    return [...groups.values()];
  }

  /** Leases a group's tasks at once and queues each behind its lane's last task; true if any came. */
  private async lengthen(group: Want[]): Promise<boolean> {
    const { occupancy, options } = this.host;
    const total = group.reduce((sum, want) => sum + want.want, 0);
    const first = group[0] as Want;
    const epoch = this.epoch;
    const leases = await this.host.port.lease({
      agentId: options.agentId,
      host: options.host,
      // Each task runs in what the one before it frees: asked for together, they get that much
      // capacity each (each one is checked against its own lane below).
      capacity: times(occupancy.capacityFreedBy(tailOf(first.lane)), total),
      max: total,
      // Answered at once: this request must not hold up the loop while a slot frees up.
      waitMs: 0,
    });
    // Round the lanes: each gets one before any gets two, should fewer come than were asked for.
    const order: Lane[] = [];
    for (let round = 0; order.length < total; round++)
      for (const want of group) if (want.want > round) order.push(want.lane);
    for (const [index, lease] of leases.entries()) this.hold(lease, order[index] as Lane, epoch);
    return leases.length > 0;
  }

  /** Queues a leased task behind its lane's last task, or gives it back. */
  private hold(lease: Lease, lane: Lane, epoch: number): void {
    const { occupancy } = this.host;
    if (this.host.stopping() || this.epoch !== epoch) {
      // Stopped, or tasks were given back while the lease was on its way.
      this.host.release(lease, "stopped before it started");
      return;
    }
    if (!fitsWithin(lease, occupancy.capacityFreedBy(tailOf(lane)), occupancy.hasGpus)) {
      this.host.release(lease, "it does not fit where the task before it in the chain runs");
      return;
    }
    // Queued in the launcher behind the task whose capacity it was leased for: it starts the
    // moment that one exits, without waiting for the exit to reach this loop. A lane whose head
    // started meanwhile follows that one, and is held again if it had emptied.
    const after = lane.aheads.at(-1)?.launch?.process ?? lane.follows.process;
    lane.aheads.push({ lease, launch: this.host.launch(lease, after) });
    if (!this.lanes.includes(lane)) this.lanes.push(lane);
  }

  /** Without chaining: one task held, for what the oldest running task will free. */
  private async holdOne(oldest: Running): Promise<boolean> {
    if (this.lanes.length > 0) return false;
    const { occupancy, options } = this.host;
    const epoch = this.epoch;
    const [lease] = await this.host.port.lease({
      agentId: options.agentId,
      host: options.host,
      capacity: occupancy.capacityWithout(oldest),
      max: 1,
      waitMs: 0,
    });
    if (!lease) return false;
    if (this.host.stopping() || this.epoch !== epoch) this.host.release(lease, "stopped before it started");
    else this.lanes.push({ follows: oldest, aheads: [{ lease }] });
    return true;
  }
}

/** The lease whose capacity a lane's next task takes: its last task's, or the one it follows. */
function tailOf(lane: Lane): Lease {
  return (lane.aheads.at(-1) ?? lane.follows).lease;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}
