import { resolve } from "node:path";
import { type Warn, warnOnStderr } from "../log/warn.js";
import { attemptFiles } from "../protocol/attemptFiles.js";
import type { Capacity, GpuOffer } from "../protocol/capacity.js";
import { gpusWanted, memoryForNewTask, shareOf } from "../protocol/capacity.js";
import type { AttemptOutcome, Lease } from "../protocol/interfaces.js";
import { readableTail, settledOutcome } from "./attemptOutcome.js";
import { freePort } from "./freePort.js";
import { launchCommand, needsFreePort } from "./launchCommand.js";
import { STATE_DIR_MARKER } from "./leftovers.js";
import { type ProcessExit, type RunningProcess, startProcess } from "./runProcess.js";
import { type GpuReader, gpuReader, TaskSampler } from "./sampler.js";
import type { Slot } from "./slots.js";
import { prepareAttempt } from "./taskFiles.js";

/** What an agent needs from a coordinator: in-process for `labsweep run`, over HTTP otherwise. */
export interface CoordinatorPort {
  /** `signal` aborts a lease still waiting (long-poll) when the agent stops: it resolves null. */
  /** Up to `max` tasks that fit `capacity` together; [] when none fits now. */
  lease(request: {
    worker: string;
    host: string;
    capacity: Capacity;
    max: number;
    /** How long the coordinator may hold the request for work. (Default: the port decides) */
    waitMs?: number;
    signal?: AbortSignal;
  }): Promise<Lease[]>;
  awaitWork(maxWaitMs: number): Promise<void>;
  /** Renews leases; returns the attempts that are no longer this agent's: the agent stops them. */
  heartbeat(attemptIds: number[]): Promise<number[]>;
  started(attemptId: number, pid: number, logPath: string): Promise<void>;
  finish(attemptId: number, report: { outcome: AttemptOutcome; logTail?: string }): Promise<unknown>;
  /** True when the sweep has nothing left that could ever run. */
  isFinished(): Promise<boolean>;
  /** Tasks claimable right now (not waiting for a backoff or a gate). */
  claimableCount(): Promise<number>;
}

export interface AgentOptions {
  worker: string;
  host: string;
  stateDir: string;
  slots: Slot[];
  /** Free memory per GPU index, as probed at start. */
  gpuFreeMiB: Map<number, number | null>;
  /**
   * Measures free GPU memory again (nvidia-smi), so `gpu_memory_gb` is checked against what is
   * free at lease time: a GPU that another user's process filled is skipped until it frees up.
   * Called before leasing, at most every `gpuRefreshMs`. (Default: the start-up figures only)
   */
  readGpuFreeMiB?: () => Promise<Map<number, number | null>>;
  /** (Default: 1 s) */
  gpuRefreshMs?: number;
  cpuCount: number;
  /** Tags this agent offers: tasks whose resources.tags it lacks are not leased to it. (Default: []) */
  tags?: string[];
  /** Heartbeat period. (Default: 3 s) */
  heartbeatMs?: number;
  /** SIGTERM → SIGKILL grace on timeouts and a second Ctrl-C. (Default: 10 s) */
  graceMs?: number;
  /** Extra environment for every task. */
  env?: NodeJS.ProcessEnv;
  /**
   * Lease one task ahead while every slot is busy, when recent tasks ran shorter than this, so a
   * slot that frees up starts its next task without a round trip to the coordinator. 0 turns it
   * off. (Default: 2 s)
   */
  leaseAheadBelowMs?: number;
  onEvent?: (event: AgentEvent) => void;
  /** Notices of things that went wrong in the background and were survived. (Default: stderr) */
  warn?: Warn;
}

export type AgentEvent =
  | { kind: "started"; claim: Lease }
  | { kind: "finished"; claim: Lease; outcome: AttemptOutcome };

export type AgentExit =
  | { kind: "done" }
  | { kind: "stopped" }
  /** Idle while `claimable` tasks wait: none fits `idle`, what this agent offers with nothing running. */
  | { kind: "stuck"; claimable: number; idle: Capacity };

/** A task's process, launched (or chained to start after another's) but not yet counted as running. */
interface Launch {
  claim: Lease;
  process: RunningProcess;
  files: ReturnType<typeof attemptFiles>;
  /** Its process has started (a chained one: the launcher opened its gate). */
  started: boolean;
}

/**
 * A task leased ahead of a free slot. Where the launcher can chain, its process is already
 * queued there to start the moment the task before it exits (`launch`); otherwise it starts
 * from the loop. The first one held follows a running task (`follows`), a second one the first.
 */
interface Ahead {
  claim: Lease;
  launch?: Launch;
  follows?: Running;
}

/**
 * Tasks held ahead, when their processes can be chained, cover this much of the slots' work:
 * the lease that refills the chain has that long to come back (a round trip is a few ms, tens
 * on a loaded machine), and brings as many as have started meanwhile. At most MAX_CHAIN.
 */
const CHAIN_COVER_MS = 50;
/** When a task's resources are first sampled (sampler.ts). */
const FIRST_SAMPLE_MS = 50;
const MAX_CHAIN = 8;

interface Running {
  claim: Lease;
  process: RunningProcess;
  gpuShare: number;
  cpus: number;
  /** Samples its resources from the moment its pid is known (sampler.ts). */
  sampler?: TaskSampler;
  /** No longer this agent's (stale lease, cancelled): stopped, and reported as interrupted. */
  abandoned?: boolean;
}

/**
 * Runs tasks on this machine: leases what fits its free slots, GPUs and CPUs, runs each in its
 * own process group, reports how it ended, and renews leases while tasks run.
 */
export class Agent {
  private readonly running = new Map<number, Running>();
  private readonly gpus: GpuOffer[];
  private stopping = false;
  /** Leases given back because Ctrl-C came while they were on their way. */
  private readonly releasing = new Set<Promise<unknown>>();
  private wakeLoop: (() => void) | null = null;
  /**
   * Set when something the loop waits for happens (a task ends, a report is written, a stop):
   * a change between the loop's look and its wait must not be slept through.
   */
  private changed = false;
  /** Aborts the lease request in flight, so a stop need not wait out a long-poll. */
  private leaseAbort: AbortController | null = null;
  /** Reports of finished tasks on their way to the port (written durably, for remote agents). */
  private readonly reporting = new Set<Promise<void>>();
  /** Tasks leased ahead, in the order they will start, each the moment a slot frees up (leaseAhead). */
  private aheads: Ahead[] = [];
  /** Counts give-backs: a lease for the chain that comes back after one is given back too. */
  private chainEpoch = 0;
  /** Chained tasks being taken back from the launcher (giveBackAheads). */
  private withdrawing: Promise<void> | null = null;
  /** Wall times of the last few finished tasks, in ms: lease ahead only for short tasks. */
  private readonly recentWallMs: number[] = [];
  /** A report the port could not take: the loop stops with it. */
  private failure: Error | null = null;
  /** GPU readings shared by the samplers of all running tasks. */
  private gpuReadings: GpuReader | null = null;
  /** Free memory per GPU last measured while none of this agent's tasks ran there (memoryForNewTask). */
  private readonly idleFreeMiB = new Map<number, number | null>();
  /** Tasks started per GPU, so a measurement a start overlapped is not taken as an idle one. */
  private readonly gpuStarts = new Map<number, number>();

  constructor(
    private readonly port: CoordinatorPort,
    private readonly options: AgentOptions,
  ) {
    // Each GPU is one share however many slots are pinned to it: more slots than GPUs let more
    // tasks run at once only where tasks ask for fractions (`gpus: 0.5`), never two whole ones.
    const indices = new Set(options.slots.flatMap((slot) => slot.gpuIndices));
    this.gpus = [...indices].map((index) => ({
      index,
      freeShare: 1,
      freeMemoryMiB: options.gpuFreeMiB.get(index) ?? null,
    }));
    for (const gpu of this.gpus) this.idleFreeMiB.set(gpu.index, gpu.freeMemoryMiB);
  }

  get runningCount(): number {
    return this.running.size;
  }

  /** Tasks leased ahead that have not started: running in the ledger, waiting here. */
  get heldCount(): number {
    return this.aheads.filter((ahead) => !ahead.launch?.started).length;
  }

  /** Leases and runs tasks until the sweep is done, `stopLeasing` is called, or nothing left fits. */
  async run(): Promise<AgentExit> {
    const heartbeat = setInterval(
      () => this.survive(this.renewLeases(), "could not renew leases (tried again next beat)"),
      this.options.heartbeatMs ?? 3000,
    );
    try {
      for (;;) {
        // What happens from here on wakes the wait at the end of this round.
        this.changed = false;
        if (this.stopping) break;
        if (this.failure) throw this.failure;
        const ahead = this.aheads[0];
        if (ahead && this.fitsNow(ahead.claim)) {
          this.aheads.shift();
          if (ahead.launch) {
            // Usually started by the launcher already, when the task it follows exited.
            ahead.launch.process.startNow();
            this.adoptHead(ahead.launch);
          } else this.start(ahead.claim);
          continue;
        }
        if (this.running.size < this.options.slots.length) await this.refreshGpuMemory();
        const capacity = this.besideChained(this.capacity());
        if (capacity.freeSlots === 0 && (await this.leaseAhead())) continue;
        if (capacity.freeSlots > 0) {
          this.leaseAbort = new AbortController();
          const claims = await this.port.lease({
            worker: this.options.worker,
            host: this.options.host,
            capacity,
            max: capacity.freeSlots,
            signal: this.leaseAbort.signal,
          });
          this.leaseAbort = null;
          if (claims.length > 0) {
            for (const claim of claims) this.startOrRelease(claim);
            continue;
          }
        }
        if (this.running.size === 0) {
          // Reports still being written may be what the sweep waits for.
          await this.reportsWritten();
          if (await this.port.isFinished()) return { kind: "done" };
          // Idle, yet a task is claimable and was not given to us: nothing left fits this machine.
          const claimable = await this.port.claimableCount();
          if (claimable > 0) {
            const idle = this.capacity();
            const retry = await this.port.lease({
              worker: this.options.worker,
              host: this.options.host,
              capacity: idle,
              max: idle.freeSlots,
            });
            if (retry.length > 0) {
              for (const claim of retry) this.startOrRelease(claim);
              continue;
            }
            return { kind: "stuck", claimable, idle };
          }
        }
        await this.waitForChange();
      }
      await this.allFinished();
      return { kind: "stopped" };
    } finally {
      clearInterval(heartbeat);
      // Leaving on a failure: a chained task must not start unwatched when its predecessor exits.
      this.giveBackAheads("the agent stopped before it started", true);
    }
  }

  /** Ctrl-C once: lease nothing new, let running tasks finish. */
  stopLeasing(): void {
    this.stopping = true;
    this.leaseAbort?.abort();
    this.giveBackAheads("stopped before it started", false);
    this.wake();
  }

  /** Ctrl-C twice: SIGTERM every running task's process group, SIGKILL after the grace period. */
  terminateRunning(): void {
    this.stopLeasing();
    for (const task of this.running.values()) task.process.terminate();
  }

  /**
   * Stops attempts that are no longer this agent's (the coordinator cancelled them, or requeued
   * them after a lost lease): SIGTERM to their process groups, SIGKILL after the grace period.
   * They are reported as interrupted, never as failed — which closes the attempt and changes
   * nothing else, as the coordinator has moved their tasks on — unless they succeeded first.
   */
  abandon(attemptIds: number[]): void {
    // Those after an abandoned one in the chain go back too: they were leased for its capacity.
    const first = this.aheads.findIndex((ahead) => attemptIds.includes(ahead.claim.attemptId));
    if (first >= 0) this.giveBackAheads("the coordinator no longer assigns it to this agent", true, first);
    for (const id of attemptIds) {
      const task = this.running.get(id);
      if (!task) continue;
      task.abandoned = true;
      task.process.terminate();
    }
  }

  /**
   * Starts a leased task, unless Ctrl-C came while the lease was on its way: then the task goes
   * straight back to pending (an interruption spends no retry) and the loop sees `stopping`.
   */
  private startOrRelease(claim: Lease): void {
    if (!this.stopping) {
      this.start(claim);
      return;
    }
    this.release(claim, "stopped before it started");
  }

  /**
   * Hands the tasks held ahead (from the `from`th on) back: pending again, no retry spent.
   * Chained ones are first taken back from the launcher, the last first, so none is left waiting
   * for one taken back; one that started meanwhile is adopted as running, and stopped too when
   * `stop` (abandoned: the coordinator moved it on, or the agent is leaving).
   */
  private giveBackAheads(error: string, stop: boolean, from = 0): void {
    this.chainEpoch++;
    const given = this.aheads.splice(from);
    if (given.length === 0) return;
    const settled = (async () => {
      for (const ahead of given.reverse()) {
        const launch = ahead.launch;
        if (!launch || (await launch.process.withdraw())) {
          this.release(ahead.claim, error);
          continue;
        }
        const running = this.adopt(launch);
        if (stop) {
          running.abandoned = true;
          running.process.terminate();
        }
      }
    })();
    const previous = this.withdrawing;
    this.survive(settled, "could not hand back tasks held ahead");
    const both = Promise.all([previous, settled.catch(() => undefined)]).then(() => {
      if (this.withdrawing === both) this.withdrawing = null;
    });
    this.withdrawing = both;
  }

  /** Hands a leased task that never started back: pending again, no retry spent. */
  private release(claim: Lease, error: string): void {
    const outcome: AttemptOutcome = { kind: "interrupted", error };
    // Should this fail, the attempt stays open and the next run requeues it like a lost one.
    const released: Promise<unknown> = this.port
      .finish(claim.attemptId, { outcome })
      .catch(() => undefined)
      .finally(() => this.releasing.delete(released));
    this.releasing.add(released);
  }

  private gpuMeasuredAt = 0;

  private async refreshGpuMemory(): Promise<void> {
    const read = this.options.readGpuFreeMiB;
    if (!read || this.gpus.length === 0) return;
    if (Date.now() - this.gpuMeasuredAt < (this.options.gpuRefreshMs ?? 1000)) return;
    this.gpuMeasuredAt = Date.now();
    const idleBefore = this.gpus.filter((gpu) => !this.busyOn(gpu.index)).map((gpu) => gpu.index);
    const startsBefore = new Map(this.gpuStarts);
    try {
      const free = await read();
      for (const gpu of this.gpus) {
        gpu.freeMemoryMiB = free.get(gpu.index) ?? gpu.freeMemoryMiB;
        const stayedIdle =
          idleBefore.includes(gpu.index) &&
          !this.busyOn(gpu.index) &&
          this.gpuStarts.get(gpu.index) === startsBefore.get(gpu.index);
        if (stayedIdle) this.idleFreeMiB.set(gpu.index, gpu.freeMemoryMiB);
      }
    } catch {
      // nvidia-smi failing now and then must not stop leasing: keep the last figures.
    }
  }

  private capacity(): Capacity {
    let cpusInUse = 0;
    for (const task of this.running.values()) cpusInUse += task.cpus;
    const totalCpus = Math.max(this.options.cpuCount, this.options.slots.length);
    return {
      freeSlots: this.options.slots.length - this.running.size,
      // A task asking for more CPUs than the machine has still runs, alone.
      freeCpus: this.running.size === 0 ? Number.POSITIVE_INFINITY : totalCpus - cpusInUse,
      gpus: this.gpus.map((gpu) => ({
        ...gpu,
        freeMemoryMiB: memoryForNewTask(
          gpu.freeMemoryMiB,
          this.idleFreeMiB.get(gpu.index) ?? null,
          this.reservedOn(gpu.index),
        ),
      })),
      hasGpus: this.gpus.length > 0,
      tags: [...(this.options.tags ?? [])],
    };
  }

  /** Whether a task of this agent runs on the GPU. */
  private busyOn(index: number): boolean {
    for (const task of this.running.values()) if (task.claim.gpuIds.includes(index)) return true;
    return false;
  }

  /** GPU memory the tasks running on a GPU reserved (`gpu_memory_gb`), held until they end. */
  private reservedOn(index: number): number {
    let reserved = 0;
    for (const task of this.running.values())
      if (task.claim.gpuIds.includes(index)) reserved += reservationOf(task.claim);
    return reserved;
  }

  private start(claim: Lease): void {
    this.adopt(this.launch(claim));
  }

  /**
   * Writes a task's files and launches its process: at once, or with `after`, chained to start
   * the moment that task's process exits. The slot, GPUs and CPUs are taken by `adopt`.
   */
  private launch(claim: Lease, after?: RunningProcess): Launch {
    const task = claim.task;
    const files = attemptFiles(this.options.stateDir, task.id, claim.attemptNumber);
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ...this.options.env,
      [STATE_DIR_MARKER]: resolve(this.options.stateDir),
      LABSWEEP_TASK_ID: String(task.id),
      LABSWEEP_TASK_SIGNATURE: task.signature,
      LABSWEEP_ATTEMPT_ID: String(claim.attemptId),
      LABSWEEP_PARAMS: JSON.stringify(task.params),
      LABSWEEP_CONFIG_FILE: files.configPath,
      LABSWEEP_RESULT_FILE: files.resultPath,
      LABSWEEP_OUTPUT_DIR: claim.placements[0]?.outputDir ?? "",
      LABSWEEP_PHASES: [...new Set(claim.placements.map((placement) => placement.phase))].join(","),
    };
    // A CPU slot on a machine with GPUs (all too busy, or left out by --gpus) gets "": without
    // it the task would see, and likely use, every GPU, including other users' busy ones.
    if (
      this.gpus.length > 0 ||
      this.options.gpuFreeMiB.size > 0 ||
      gpusWanted(task.policy.resources, false) > 0
    ) {
      // nvidia-smi numbers GPUs by PCI bus; CUDA must use the same order for the ids to agree.
      env.CUDA_DEVICE_ORDER = "PCI_BUS_ID";
      env.CUDA_VISIBLE_DEVICES = claim.gpuIds.join(",");
    }
    // Ledgers from before launchers have none; an `auto` port is picked in `prepare`, which runs
    // before the launch reads `command`.
    const launcher = task.policy.launcher ?? null;
    let command = task.command;
    const child = startProcess({
      get command() {
        return command;
      },
      cwd: task.cwd,
      env,
      logPath: files.logPath,
      timeoutMs: task.policy.timeoutMs,
      graceMs: this.options.graceMs,
      prepare: async () => {
        const port = needsFreePort(launcher, claim.gpuIds) ? await freePort() : undefined;
        command = launchCommand(task.command, launcher, claim.gpuIds, { port });
        prepareAttempt(files, task, claim.attemptId, claim.placements);
      },
      after,
    });
    const launch: Launch = { claim, process: child, files, started: false };
    this.survive(
      child.pid.then((pid) => {
        launch.started = true;
        if (pid > 0 && after) this.chainedStarted(launch);
      }),
      `could not start task ${task.id}`,
    );
    return launch;
  }

  /**
   * The launcher started the head of the chain (the task before it exited): it runs from now on,
   * whatever the loop is waiting for (a long-polled lease for another slot, say), so it is
   * adopted at once and its end reported on time. Not found: the loop adopted it already, or it
   * is being given back (giveBackAheads adopts it then).
   */
  private chainedStarted(launch: Launch): void {
    if (this.aheads[0]?.launch !== launch) return;
    this.aheads.shift();
    this.adoptHead(launch);
    this.wake();
  }

  /** Adopts the chain's head, just taken off it: the task behind it now follows it. */
  private adoptHead(launch: Launch): void {
    const running = this.adopt(launch);
    const next = this.aheads[0];
    if (next) next.follows = running;
  }

  /** Counts a launched task as running: it takes its slot, CPUs and GPU shares, and is watched. */
  private adopt(launch: Launch): Running {
    const { claim, process: child, files } = launch;
    const task = claim.task;
    const share = shareOf(task.policy.resources, this.gpus.length > 0);
    for (const index of claim.gpuIds) {
      const gpu = this.gpus.find((offer) => offer.index === index);
      if (gpu) gpu.freeShare -= share;
      this.gpuStarts.set(index, (this.gpuStarts.get(index) ?? 0) + 1);
    }
    const running: Running = { claim, process: child, gpuShare: share, cpus: task.policy.resources.cpus };
    this.running.set(claim.attemptId, running);
    this.options.onEvent?.({ kind: "started", claim });
    const noticed = child.pid.then((pid) => {
      if (pid <= 0) return undefined;
      const started = this.port.started(claim.attemptId, pid, files.logPath);
      this.gpuReadings ??= gpuReader({ env: { ...process.env, ...this.options.env } });
      running.sampler = new TaskSampler({
        processGroup: pid,
        gpuIndices: claim.gpuIds,
        gpus: this.gpuReadings,
        // Tasks of a few ms (the agent's busiest case) are not worth a scan of every process.
        firstAfterMs: FIRST_SAMPLE_MS,
      });
      return started;
    });
    // Only the dashboard wants the pid: a notice that fails costs the task nothing.
    this.survive(noticed, `could not record the process of task ${task.id}`);
    this.survive(
      child.exited.then((exit) => this.finished(running, exit, files.resultPath, files.logPath)),
      `could not report task ${task.id}`,
    );
    return running;
  }

  private async finished(
    task: Running,
    exit: ProcessExit,
    resultPath: string,
    logPath: string,
  ): Promise<void> {
    let outcome = settledOutcome(exit, resultPath, task.claim.task.policy.timeoutMs);
    if (task.abandoned && outcome.kind !== "succeeded") {
      const error = "stopped: the coordinator no longer assigns it to this agent";
      outcome = { kind: "interrupted", error, exitCode: exit.exitCode, signal: exit.signal };
    }
    const usage = task.sampler?.stop();
    if (outcome.kind === "succeeded" && usage) outcome.usage = usage;
    const tail = outcome.kind === "succeeded" ? undefined : readableTail(logPath);
    // The slot is free the moment the process is gone: leasing its next task need not wait for
    // this report to be written and sent (the port decides whether the coordinator must hear it
    // first), so the slot idles for one round trip, not three.
    for (const index of task.claim.gpuIds) {
      const gpu = this.gpus.find((offer) => offer.index === index);
      if (gpu) gpu.freeShare += task.gpuShare;
    }
    this.running.delete(task.claim.attemptId);
    if ("wallSeconds" in outcome) {
      this.recentWallMs.push(outcome.wallSeconds * 1000);
      if (this.recentWallMs.length > 5) this.recentWallMs.shift();
    }
    const report: Promise<void> = this.port
      .finish(task.claim.attemptId, { outcome, logTail: tail })
      .then(
        () => this.options.onEvent?.({ kind: "finished", claim: task.claim, outcome }),
        (error: unknown) => {
          this.failure ??= error instanceof Error ? error : new Error(String(error));
        },
      )
      .finally(() => {
        this.reporting.delete(report);
        this.wake();
      });
    this.reporting.add(report);
    this.wake();
  }

  /** Waits until every finished task's report is in the port's hands. */
  private async reportsWritten(): Promise<void> {
    while (this.reporting.size > 0) await Promise.allSettled([...this.reporting]);
  }

  private async renewLeases(): Promise<void> {
    const held = [...this.running.keys(), ...this.aheads.map((ahead) => ahead.claim.attemptId)];
    // An idle agent with GPUs still beats: its heartbeats carry the GPUs' readings.
    if (held.length === 0 && this.gpus.length === 0) return;
    this.abandon(await this.port.heartbeat(held));
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
  private async leaseAhead(): Promise<boolean> {
    const belowMs = this.options.leaseAheadBelowMs ?? 2000;
    if (belowMs <= 0 || this.recentWallMs.length < 2) return false;
    const taskMs = median(this.recentWallMs);
    if (taskMs >= belowMs) return false;
    const oldest = [...this.running.values()][0];
    if (!oldest) return false;
    const last = this.aheads.at(-1);
    if (last && !last.launch) return false;
    const depth = Math.min(
      MAX_CHAIN,
      Math.max(1, Math.ceil((CHAIN_COVER_MS * this.options.slots.length) / Math.max(taskMs, 0.1))),
    );
    // Held tasks the launcher has started already cover nothing.
    const want = last ? depth - this.heldCount : 1;
    if (want <= 0) return false;
    const epoch = this.chainEpoch;
    const claims = await this.port.lease({
      worker: this.options.worker,
      host: this.options.host,
      // Several chained tasks run one after another in what the last held one frees: asked for
      // together, they get that much capacity each (each one is checked against it below).
      capacity: last ? times(this.capacityFreedBy(last.claim), want) : this.capacityWithout(oldest),
      max: want,
      // Answered at once: this request must not hold up the loop while a slot frees up.
      waitMs: 0,
    });
    if (claims.length === 0) return false;
    let previous = last;
    for (const claim of claims) {
      if (this.stopping || this.chainEpoch !== epoch) {
        // Stopped, or the chain was given back while the lease was on its way.
        this.release(claim, "stopped before it started");
        continue;
      }
      let ahead: Ahead | null = { claim };
      if (previous?.launch)
        ahead = fitsWithin(claim, this.capacityFreedBy(previous.claim), this.gpus.length > 0)
          ? { claim, launch: this.launch(claim, previous.launch.process) }
          : null;
      // Queued in the launcher behind the task whose capacity it was leased for: it starts the
      // moment that one exits, without waiting for the exit to reach this loop.
      else if (oldest.process.chainable)
        ahead = { claim, launch: this.launch(claim, oldest.process), follows: oldest };
      if (!ahead) {
        this.release(claim, "it does not fit where the task before it in the chain runs");
        continue;
      }
      // The task it follows started while the lease was on its way: it follows that one running.
      if (this.aheads.length === 0 && previous) ahead.follows ??= this.running.get(previous.claim.attemptId);
      this.aheads.push(ahead);
      previous = ahead;
    }
    return true;
  }

  /** Exactly what a task held ahead will free when it ends: its slot, CPUs and GPU shares. */
  private capacityFreedBy(claim: Lease): Capacity {
    const resources = claim.task.policy.resources;
    const share = shareOf(resources, this.gpus.length > 0);
    // Its memory reservation comes back only once it runs; a held one's is not counted yet.
    const freedMiB = this.running.has(claim.attemptId) ? reservationOf(claim) : 0;
    return {
      freeSlots: 1,
      // Replacing the only running task, it runs alone: any CPU count fits, as on an idle agent.
      freeCpus: this.running.size === 1 ? Number.POSITIVE_INFINITY : resources.cpus,
      gpus: this.capacity()
        .gpus.filter((gpu) => claim.gpuIds.includes(gpu.index))
        .map((gpu) => ({ ...gpu, freeShare: share, freeMemoryMiB: plus(gpu.freeMemoryMiB, freedMiB) })),
      hasGpus: this.gpus.length > 0,
      tags: [...(this.options.tags ?? [])],
    };
  }

  /** Whether a task leased ahead fits what is free now: a slot, its CPUs, its GPUs' shares. */
  private fitsNow(claim: Lease): boolean {
    return fitsWithin(claim, this.capacity(), this.gpus.length > 0);
  }

  /**
   * What a lease for the free slots may take while a chained task waits to replace the task it
   * follows: no more than is free now, nor than will be free once it has replaced it.
   */
  private besideChained(capacity: Capacity): Capacity {
    // Tasks chained behind the first take no more than it frees: only the first can need more.
    const first = this.aheads[0];
    const follows = first?.follows;
    if (!first?.launch || !follows) return capacity;
    const next = first.claim;
    const nextShare = shareOf(next.task.policy.resources, this.gpus.length > 0);
    return {
      ...capacity,
      freeCpus: Math.min(
        capacity.freeCpus,
        capacity.freeCpus + follows.cpus - next.task.policy.resources.cpus,
      ),
      gpus: capacity.gpus.map((gpu) => {
        const freed = follows.claim.gpuIds.includes(gpu.index) ? follows.gpuShare : 0;
        const taken = next.gpuIds.includes(gpu.index) ? nextShare : 0;
        const freedMiB = follows.claim.gpuIds.includes(gpu.index) ? reservationOf(follows.claim) : 0;
        const takenMiB = next.gpuIds.includes(gpu.index) ? reservationOf(next) : 0;
        return {
          ...gpu,
          freeShare: Math.min(gpu.freeShare, gpu.freeShare + freed - taken),
          freeMemoryMiB: plus(gpu.freeMemoryMiB, Math.min(0, freedMiB - takenMiB)),
        };
      }),
    };
  }

  /** What would be free once `task` ends. */
  private capacityWithout(task: Running): Capacity {
    const capacity = this.capacity();
    const freeCpus = this.running.size === 1 ? Number.POSITIVE_INFINITY : capacity.freeCpus + task.cpus;
    return {
      ...capacity,
      freeSlots: capacity.freeSlots + 1,
      freeCpus,
      gpus: capacity.gpus.map((gpu) =>
        task.claim.gpuIds.includes(gpu.index)
          ? {
              ...gpu,
              freeShare: gpu.freeShare + task.gpuShare,
              freeMemoryMiB: plus(gpu.freeMemoryMiB, reservationOf(task.claim)),
            }
          : gpu,
      ),
    };
  }

  /** Lets `work` run on in the background; a failure is told, never left unhandled. */
  private survive(work: Promise<unknown>, what: string): void {
    work.catch((error: unknown) => this.warnOf(what, error));
  }

  private warnOf(what: string, error: unknown): void {
    const message = `labsweep: ${what}: ${error instanceof Error ? error.message : String(error)}`;
    (this.options.warn ?? warnOnStderr)(message);
  }

  private wake(): void {
    this.changed = true;
    this.wakeLoop?.();
  }

  private waitForChange(): Promise<void> {
    if (this.changed) {
      this.changed = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      let settled = false;
      const done = (): void => {
        if (settled) return;
        settled = true;
        this.wakeLoop = null;
        resolve();
      };
      this.wakeLoop = done;
      this.port.awaitWork(1000).then(done, (error: unknown) => {
        // The coordinator could not say (its ledger unreachable a moment): look again shortly.
        this.warnOf("could not wait for work", error);
        setTimeout(done, 1000);
      });
    });
  }

  private async allFinished(): Promise<void> {
    this.giveBackAheads("stopped before it started", false);
    // A chained task that started before it could be taken back is running: wait for it too.
    while (this.withdrawing) await this.withdrawing;
    while (this.running.size > 0) await this.waitForChange();
    await this.reportsWritten();
    await Promise.allSettled([...this.releasing]);
    if (this.failure) throw this.failure;
  }
}

/** Whether a leased task, on the GPUs it was given, fits `capacity`: a slot, its CPUs, its GPU shares. */
function fitsWithin(claim: Lease, capacity: Capacity, hasGpus: boolean): boolean {
  const resources = claim.task.policy.resources;
  if (capacity.freeSlots < 1 || resources.cpus > capacity.freeCpus) return false;
  const share = shareOf(resources, hasGpus);
  return claim.gpuIds.every((index) => {
    const gpu = capacity.gpus.find((offer) => offer.index === index);
    return gpu !== undefined && gpu.freeShare >= share - 1e-9;
  });
}

/** The GPU memory a task reserves on each of its GPUs while it runs. */
function reservationOf(claim: Lease): number {
  return claim.task.policy.resources.gpuMemoryGb * 1024;
}

function plus(mib: number | null, delta: number): number | null {
  return mib === null ? null : mib + delta;
}

/** `count` times `capacity`'s slots, CPUs and GPU shares. */
function times(capacity: Capacity, count: number): Capacity {
  return {
    ...capacity,
    freeSlots: capacity.freeSlots * count,
    freeCpus: capacity.freeCpus * count,
    gpus: capacity.gpus.map((gpu) => ({ ...gpu, freeShare: gpu.freeShare * count })),
  };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}
