import { logger, type Warn } from "../log/logger.js";
import { type Capacity, shareOf } from "../protocol/capacity.js";
import type { AttemptOutcome, Lease } from "../protocol/interfaces.js";
import { reportWithArtifacts } from "./artifacts.js";
import { finalOutcome } from "./attemptOutcome.js";
import { AttemptSetup } from "./attemptSetup.js";
import type { CoordinatorPort } from "./coordinatorPort.js";
import { freePort } from "./freePort.js";
import { watchForHang } from "./hangWatch.js";
import { launchCommand, needsFreePort } from "./launchCommand.js";
import { type Launch, LeaseAheadChain } from "./leaseAhead.js";
import { Occupancy, type OccupancyOptions, type Running } from "./occupancy.js";
import { PointRelay } from "./pointRelay.js";
import { type ProcessExit, type RunningProcess, startProcess, stopSpec } from "./runProcess.js";
import { type GpuReader, gpuReader, TaskSampler } from "./sampler.js";
import { type TaskFiles, tightenTaskFiles } from "./taskFiles.js";
import { AgentTermination, type Termination } from "./termination.js";

/** What the dispatch loop needs beyond what occupancy.ts tracks of the machine. */
export interface AgentOptions extends OccupancyOptions {
  agentId: string;
  host: string;
  stateDir: string;
  /** Heartbeat period. (Default: 3 s) */
  heartbeatMs?: number;
  /** Stop signal → SIGKILL grace where a phase sets no stop_grace. (Default: 30 s) */
  graceMs?: number;
  /** Root of the tasks' checkpoint dirs on this machine; wins over checkpoint_root. (Default: none) */
  checkpointRoot?: string;
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
  | { kind: "started"; lease: Lease }
  | { kind: "finished"; lease: Lease; outcome: AttemptOutcome };

export type AgentExit =
  | { kind: "done" }
  | { kind: "stopped" }
  /** Idle while `claimable` tasks wait: none fits `idle`, what this agent offers with nothing running. */
  | { kind: "stuck"; claimable: number; idle: Capacity };

/** When a task's resources are first sampled (sampler.ts). */
const FIRST_SAMPLE_MS = 50;

/**
 * Runs tasks on this machine: leases what fits its free slots, GPUs and CPUs, runs each in its
 * own process group, reports how it ended, and renews leases while tasks run.
 */
export class Agent {
  private readonly occupancy: Occupancy;
  private readonly chain: LeaseAheadChain;
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
  /** A report the port could not take: the loop stops with it. */
  private failure: Error | null = null;
  /** GPU readings shared by the samplers of all running tasks. */
  private gpuReadings: GpuReader | null = null;
  /** Each attempt's files, work dir and environment. */
  private readonly setup: AttemptSetup;
  /** Relays tasks' live points, when the port takes them. */
  private readonly relay: PointRelay;
  private readonly termination = new AgentTermination();

  constructor(
    private readonly port: CoordinatorPort,
    private readonly options: AgentOptions,
  ) {
    this.occupancy = new Occupancy(options);
    this.setup = new AttemptSetup(options);
    this.relay = new PointRelay({
      send: (batches) => port.points?.(batches) ?? Promise.resolve(),
      warn: options.warn,
    });
    this.chain = new LeaseAheadChain({
      port,
      occupancy: this.occupancy,
      options,
      stopping: () => this.stopping,
      launch: (lease, after) => this.launch(lease, after),
      adopt: (launch) => this.adopt(launch),
      release: (lease, error) => this.release(lease, error),
      survive: (work, what) => this.survive(work, what),
      wake: () => this.wake(),
    });
  }

  get runningCount(): number {
    return this.occupancy.running.size;
  }

  /** The tasks leased ahead: how many wait here (running in the ledger), behind how many running. */
  get ahead(): Pick<LeaseAheadChain, "heldCount" | "laneCount"> {
    return this.chain;
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
        if (this.chain.startHead((lease) => this.adopt(this.launch(lease)))) continue;
        if (this.occupancy.running.size < this.options.slots.length) await this.occupancy.refreshGpuMemory();
        const capacity = this.chain.besideChained(this.occupancy.capacity());
        if (capacity.freeSlots === 0 && (await this.chain.leaseAhead())) continue;
        if (capacity.freeSlots > 0) {
          this.leaseAbort = new AbortController();
          const leases = await this.lease(capacity, this.leaseAbort.signal);
          this.leaseAbort = null;
          if (leases.length > 0) {
            for (const lease of leases) this.startOrRelease(lease);
            continue;
          }
        }
        if (this.occupancy.running.size === 0) {
          // Reports still being written may be what the sweep waits for.
          await this.reportsWritten();
          if (await this.port.isFinished()) return { kind: "done" };
          // Idle, yet a task is claimable and was not given to us: nothing left fits this machine.
          const claimable = await this.port.claimableCount();
          if (claimable > 0) {
            const idle = this.occupancy.capacity();
            const retry = await this.lease(idle);
            if (retry.length > 0) {
              for (const lease of retry) this.startOrRelease(lease);
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
      this.chain.giveBack("the agent stopped before it started", true);
      await this.relay.drain(5000);
    }
  }

  /** Ctrl-C once: lease nothing new, let running tasks finish. */
  stopLeasing(): void {
    this.stopping = true;
    this.leaseAbort?.abort();
    this.chain.giveBack("stopped before it started", false);
    this.wake();
  }

  /** Ctrl-C twice, SIGTERM or a time limit: stop every running task (see Termination). */
  terminateRunning(why: Termination = "shutdown"): void {
    this.stopLeasing();
    this.termination.begin(why);
    for (const task of this.occupancy.running.values()) task.process.terminate(why);
  }

  /**
   * Stops attempts that are no longer this agent's (the coordinator cancelled them, or requeued
   * them after a lost lease): SIGTERM to their process groups, SIGKILL after the grace period.
   * They are reported as interrupted, never as failed — which closes the attempt and changes
   * nothing else, as the coordinator has moved their tasks on — unless they succeeded first.
   */
  abandon(attemptIds: number[]): void {
    this.chain.abandon(attemptIds);
    for (const id of attemptIds) {
      const task = this.occupancy.running.get(id);
      if (!task) continue;
      task.abandoned = true;
      task.process.terminate("abandoned");
    }
  }

  /** Asks the port for as many tasks as `capacity` has free slots. */
  private lease(capacity: Capacity, signal?: AbortSignal): Promise<Lease[]> {
    const { agentId, host } = this.options;
    return this.port.lease({ agentId, host, capacity, max: capacity.freeSlots, ...(signal && { signal }) });
  }

  /**
   * Starts a leased task, unless Ctrl-C came while the lease was on its way: then the task goes
   * straight back to pending (an interruption spends no retry) and the loop sees `stopping`.
   */
  private startOrRelease(lease: Lease): void {
    if (this.stopping) this.release(lease, "stopped before it started");
    else this.adopt(this.launch(lease));
  }

  /** Hands a leased task that never started back: pending again, no retry spent. */
  private release(lease: Lease, error: string): void {
    const outcome: AttemptOutcome = { kind: "interrupted", error };
    // Should this fail, the attempt stays open and the next run requeues it like a lost one.
    const released: Promise<unknown> = this.port
      .finish(lease.attemptId, { outcome })
      .catch(() => undefined)
      .finally(() => this.releasing.delete(released));
    this.releasing.add(released);
  }

  /**
   * Writes a task's files and launches its process: at once, or with `after`, chained to start
   * the moment that task's process exits. The slot, GPUs and CPUs are taken by `adopt`.
   */
  private launch(lease: Lease, after?: RunningProcess): Launch {
    const task = lease.task;
    const files = this.setup.files(lease);
    const onGpuMachine = this.occupancy.hasGpus || this.options.gpuFreeMiB.size > 0;
    const { base, own } = this.setup.environment(lease, files, onGpuMachine);
    // Ledgers from before launchers have none; an `auto` port is picked in `prepare`, which runs
    // before the launch reads `command`.
    const launcher = task.policy.launcher ?? null;
    let command = task.command;
    const child = startProcess({
      get command() {
        return command;
      },
      cwd: task.cwd,
      env: own,
      baseEnv: base,
      logPath: files.logPath,
      timeoutMs: task.policy.timeoutMs,
      ...this.setup.starting(lease, files),
      ...stopSpec(task.policy, files.stopPath, this.options.graceMs),
      prepare: async () => {
        const port = needsFreePort(launcher, lease.gpuIds) ? await freePort() : undefined;
        command = launchCommand(task.command, launcher, lease.gpuIds, { port });
        this.setup.prepare(files);
      },
      after,
    });
    const launch: Launch = { lease, process: child, files, started: false, git: this.setup.provenance(task) };
    this.survive(
      child.pid.then((pid) => {
        launch.started = true;
        if (pid > 0 && after) this.chain.chainedStarted(launch);
      }),
      `could not start task ${task.id}`,
    );
    return launch;
  }

  /** Counts a launched task as running: it takes its slot, CPUs and GPU shares, and is watched. */
  private adopt(launch: Launch): Running {
    const { lease, process: child, files, git } = launch;
    const task = lease.task;
    const share = shareOf(task.policy.resources, this.occupancy.hasGpus);
    const running: Running = { lease, process: child, gpuShare: share, cpus: task.policy.resources.cpus };
    this.occupancy.take(running);
    this.options.onEvent?.({ kind: "started", lease });
    this.relay.watch(lease.attemptId, files);
    const noticed = child.pid.then((pid) => {
      if (pid <= 0) return undefined;
      const started = this.port.started(lease.attemptId, pid, files.logPath);
      this.gpuReadings ??= gpuReader({ env: { ...process.env, ...this.options.env } });
      running.sampler = new TaskSampler({
        processGroup: pid,
        gpuIndices: lease.gpuIds,
        gpus: this.gpuReadings,
        // Tasks of a few ms (the agent's busiest case) are not worth a scan of every process.
        firstAfterMs: FIRST_SAMPLE_MS,
      });
      watchForHang(lease, files, running.sampler, child);
      return started;
    });
    // Only the dashboard wants the pid: a notice that fails costs the task nothing.
    this.survive(noticed, `could not record the process of task ${task.id}`);
    this.survive(
      child.exited.then((exit) => this.finished(running, exit, files, git)),
      `could not report task ${task.id}`,
    );
    return running;
  }

  private async finished(task: Running, ended: ProcessExit, files: TaskFiles, git: Launch["git"]) {
    const exit = await this.termination.attribute(ended); // killed by the agent's own stop signal?
    const { resultPath, logPath, workDir } = files;
    // Unreadable or another's: told; the report (saying what reading the result finds) goes out.
    const loose = tightenTaskFiles(files);
    if (loose) this.warnOf(`could not make the files of task ${task.lease.task.id} private`, loose);
    const checkpoint = this.setup.checkpointDir(task.lease.task);
    const { outcome, tail } = finalOutcome(task, exit, { resultPath, logPath, checkpointDir: checkpoint });
    // The slot is free the moment the process is gone: leasing its next task need not wait for
    // this report to be written and sent (the port decides whether the coordinator must hear it
    // first), so the slot idles for one round trip, not three.
    this.occupancy.free(task);
    if ("wallSeconds" in outcome) this.chain.recordWallMs(outcome.wallSeconds * 1000);
    this.relay.exited(task.lease.attemptId);
    // A curve's last points go before the report that ends the task (the sweep may end with it).
    const send = () =>
      reportWithArtifacts(this.port, task.lease, { outcome, logTail: tail }, workDir, git).finally(() =>
        this.setup.release(files),
      );
    const settled = this.relay.settled(task.lease.attemptId, 1000);
    const report: Promise<void> = (settled ? settled.then(send) : send())
      .then(
        (reported) => this.options.onEvent?.({ kind: "finished", lease: task.lease, outcome: reported }),
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
    const held = [...this.occupancy.running.keys(), ...this.chain.attemptIds];
    // An idle agent beats while reports upload (their leases), and with GPUs (their readings).
    if (held.length === 0 && !this.occupancy.hasGpus && !this.port.unsentReports?.()) return;
    this.abandon(await this.port.heartbeat(held));
  }

  /** Lets `work` run on in the background; a failure is told, never left unhandled. */
  private survive(work: Promise<unknown>, what: string): void {
    work.catch((error: unknown) => this.warnOf(what, error));
  }

  private warnOf(what: string, error: unknown): void {
    // The dispatch loop runs in `labsweep run` too: its notices speak for labsweep, not an agent.
    logger("labsweep", this.options.warn).warn(
      `${what}: ${error instanceof Error ? error.message : String(error)}`,
    );
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
    this.chain.giveBack("stopped before it started", false);
    // A chained task that started before it could be taken back is running: wait for it too.
    await this.chain.withdrawn();
    while (this.occupancy.running.size > 0) await this.waitForChange();
    await this.reportsWritten();
    await Promise.allSettled([...this.releasing]);
    if (this.failure) throw this.failure;
  }
}
