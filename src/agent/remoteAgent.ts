import { availableParallelism } from "node:os";
import { join } from "node:path";
import { type Logger, logger, type Warn } from "../log/logger.js";
import { attemptFiles } from "../protocol/attemptFiles.js";
import type { ChannelEvent } from "../protocol/http.js";
import { Agent, type AgentEvent, type AgentExit } from "./agent.js";
import { forgetRunning, killPreviousTasks, openAgentState, recordRunning } from "./agentState.js";
import { allocationEnd } from "./allocationEnd.js";
import type { ProbeSpec } from "./capabilities.js";
import { holdChannel } from "./channel.js";
import type { CoordinatorPort } from "./coordinatorPort.js";
import { probeGpus } from "./gpuProbe.js";
import { CoordinatorClient, UnauthorizedError } from "./httpClient.js";
import { HttpPort } from "./httpPort.js";
import { watchIdle } from "./idleWatch.js";
import { LogStream } from "./logStream.js";
import { describeCapabilities, gpuSamples, type Machine, probeMachine } from "./machine.js";
import { Outbox } from "./outbox.js";
import { postPoints } from "./pointRelay.js";
import { leaseRunnable } from "./runnableLease.js";
import type { Termination } from "./termination.js";

export interface RemoteAgentOptions {
  /** The coordinator's base URLs; the next one is tried when one cannot be reached. */
  servers: string[];
  token: string;
  /** This agent's own state dir: id, outbox, running tasks, logs. One agent per dir. */
  stateDir: string;
  /** Exactly this many slots. (Default: one per GPU with ≥ 4 GB free, else one per CPU core) */
  slots?: number;
  /** Only these GPU indices. (Default: all) */
  gpus?: number[];
  tags?: string[];
  /** (Default: the hostname) */
  name?: string;
  /** Where tasks run when their cwd (a path on the coordinator's machine) does not exist here. */
  workdir?: string;
  /** Keep waiting for work when the coordinator says there is none left. (Default: false) */
  stay?: boolean;
  probes?: ProbeSpec[];
  /** How long a probe may run before it counts as failed. (Default: 30 s) */
  probeTimeoutMs?: number;
  /** Stop signal → SIGKILL grace where a phase sets no stop_grace. (Default: 30 s) */
  graceMs?: number;
  /** This machine's mount of the tasks' checkpoint root; wins over checkpoint_root. (Default: none) */
  checkpointRoot?: string | undefined;
  /** Environment for nvidia-smi, probes and tasks. (Default: process.env) */
  env?: NodeJS.ProcessEnv;
  /** Host-wide GPU lock dir. (Default: gpuLockDir()) */
  lockDir?: string;
  /** Progress and notices, one line each. (Default: stderr) */
  log?: Warn;
  /**
   * Give up once no coordinator URL has answered for this long while no task runs here: a late
   * SLURM array element whose coordinator has exited must not hold its allocation forever.
   * Running tasks are always finished first. (Default: never; wait and retry)
   */
  giveUpAfterMs?: number;
  /**
   * Exit once no task has run here for this long (`--idle-exit`): an agent in a SLURM allocation
   * releases it while the sweep has no work for it. (Default: never)
   */
  idleExitMs?: number;
  /**
   * In a SLURM allocation: lease only tasks whose timeout ends this long before the allocation
   * does (when SLURM's warning signal comes, `--stop-before`). (Default: 0)
   */
  stopBeforeMs?: number;
}

/** How long a report may wait for a lease to carry it while tasks are held ahead (Outbox). */
const REPORT_DELAY_MS = 50;

/** `unreachable`: gave up waiting for the coordinator (giveUpAfterMs); `idle`: nothing ran for idleExitMs. */
export type RemoteAgentExit = { kind: "done" | "stopped" | "unreachable" | "idle" };

/**
 * An agent serving a coordinator over HTTP: probes and locks this machine's GPUs, registers,
 * sends what a previous incarnation left in its outbox, then leases and runs tasks — streaming
 * their logs, renewing their leases, stopping those the coordinator cancels — until the
 * coordinator says nothing is left for it (`done`) or it is stopped. A rejected token throws
 * UnauthorizedError.
 */
export class RemoteAgent {
  private agent: Agent | null = null;
  private readonly stop = new AbortController();
  private fatal: Error | null = null;
  private terminating: Termination | null = null;
  private readonly streams = new Map<number, LogStream>();
  /** Where notices go, as given (the parts this agent builds write there too). */
  private readonly sink: Warn | undefined;
  private readonly log: Logger;
  private machine: Machine | null = null;
  private gaveUp = false;
  private idled = false;

  constructor(private readonly options: RemoteAgentOptions) {
    this.sink = options.log;
    this.log = logger("agent", options.log);
  }

  /** Ctrl-C once: lease nothing new, let running tasks finish, then exit. */
  stopLeasing(): void {
    this.stop.abort();
    this.agent?.stopLeasing();
  }

  /** Ctrl-C twice, SIGTERM (`preempt`), a time limit: also stop running tasks (interrupted or preempted). */
  terminate(why: Termination = "shutdown"): void {
    this.terminating = why;
    this.stopLeasing();
    this.agent?.terminateRunning(why);
  }

  async run(): Promise<RemoteAgentExit> {
    const state = openAgentState(this.options.stateDir);
    try {
      const previous = killPreviousTasks(state.stateDir);
      if (previous.killed > 0)
        this.log.info(`killed ${previous.killed} leftover process(es) of a previous run`);
      const machine = await probeMachine(state.agentId, this.options, this.log);
      this.machine = machine;
      try {
        return await this.connectAndRun(state.stateDir, machine);
      } finally {
        machine.locks.release();
      }
    } finally {
      state.release();
    }
  }

  /** Registers, settles what a previous run left, holds the channel, and runs tasks. */
  private async connectAndRun(stateDir: string, machine: Machine): Promise<RemoteAgentExit> {
    const { agentId } = machine.capabilities;
    const client = new CoordinatorClient({
      servers: this.options.servers,
      token: this.options.token,
      warn: this.sink,
    });
    const { http, outbox } = this.openPort(client, stateDir, machine);
    const channelStop = new AbortController();
    let channel: Promise<void> = Promise.resolve();
    const watchdog = this.watchOutage(client);
    const idleWatch = this.watchIdle();
    try {
      const registration = await this.unlessStopped(() =>
        http.register(machine.capabilities, this.stop.signal),
      );
      if (!registration) return { kind: this.whyStopped() };
      this.log.info(`registered with ${client.server} as ${describeCapabilities(machine.capabilities)}`);
      // Held before the previous run's reports are settled: the last of them may finish the
      // sweep, and a coordinator that then exits says "done" only to agents on the channel.
      channel = holdChannel(client, {
        agentId,
        signal: channelStop.signal,
        warn: this.sink,
        onEvent: (event) => this.onChannelEvent(event, http),
        onFatal: (error) => this.onError(error),
      });
      await this.settlePrevious(http, outbox, registration.openAttempts);
      // Awaited in here, so the outbox is flushed before `finally` closes it.
      if (this.stop.signal.aborted) return await this.finish(outbox, "stopped", http);
      const exit = await this.runTasks(http, stateDir, machine, registration.heartbeatMs);
      return await this.finish(outbox, exit.kind === "done" ? "done" : this.whyStopped(), http);
    } finally {
      clearInterval(watchdog);
      clearInterval(idleWatch);
      channelStop.abort();
      await channel;
      await outbox.close();
      for (const stream of this.streams.values()) await stream.finish();
    }
  }

  /** The HTTP port and the outbox its reports wait in (each needs the other). */
  private openPort(
    client: CoordinatorClient,
    stateDir: string,
    machine: Machine,
  ): { http: HttpPort; outbox: Outbox } {
    let port: HttpPort | null = null;
    const outbox = new Outbox(
      join(stateDir, "outbox"),
      (record, signal) => (port as HttpPort).deliver(record, signal),
      {
        warn: this.sink,
        onError: (error) => this.onError(error),
        // While tasks are held ahead (short tasks, a lease every task or two), a report waits a
        // moment for the next lease to carry it: one request then settles several.
        sendDelayMs: () => ((this.agent?.ahead.heldCount ?? 0) > 0 ? REPORT_DELAY_MS : 0),
      },
    );
    port = new HttpPort(client, {
      agentId: machine.capabilities.agentId,
      slots: machine.slots.length,
      outbox,
      stay: this.options.stay,
      onFatal: (error) => this.onError(error),
      warn: this.sink,
    });
    return { http: port, outbox };
  }

  /** --give-up-after: stops leasing once no coordinator has answered that long while nothing runs. */
  private watchOutage(client: CoordinatorClient): NodeJS.Timeout | undefined {
    const giveUpAfterMs = this.options.giveUpAfterMs;
    if (giveUpAfterMs === undefined) return undefined;
    const watchdog = setInterval(
      () => {
        if (this.gaveUp || client.outageMs() < giveUpAfterMs) return;
        if (this.agent && (this.agent.runningCount > 0 || this.agent.ahead.heldCount > 0)) return;
        this.gaveUp = true;
        this.log.info(
          `no coordinator has answered for ${Math.round(client.outageMs() / 1000)} s (--give-up-after); giving up`,
        );
        this.stopLeasing();
      },
      Math.min(1000, giveUpAfterMs),
    );
    watchdog.unref();
    return watchdog;
  }

  /** --idle-exit: stops leasing once nothing has run here that long. */
  private watchIdle(): NodeJS.Timeout | undefined {
    const { idleExitMs } = this.options;
    return idleExitMs === undefined
      ? undefined
      : watchIdle({
          idleExitMs,
          busy: () => this.agent === null || this.agent.runningCount > 0 || this.agent.ahead.heldCount > 0,
          onIdle: (idleMs) => {
            this.idled = true;
            this.log.info(`no task has run here for ${Math.round(idleMs / 1000)} s (--idle-exit); exiting`);
            this.stopLeasing();
          },
        });
  }

  /** Why the agent stopped when the coordinator did not say done. */
  private whyStopped(): Exclude<RemoteAgentExit["kind"], "done"> {
    return this.gaveUp ? "unreachable" : this.idled ? "idle" : "stopped";
  }

  /** The dispatch loop (agent.ts) over this port, until done or stopped. */
  private async runTasks(
    port: HttpPort,
    stateDir: string,
    machine: Machine,
    heartbeatMs: number,
  ): Promise<AgentExit> {
    const endsAt = await allocationEnd(this.options.env ?? process.env);
    if (endsAt !== null)
      this.log.info(`this allocation ends at ${new Date(endsAt).toISOString()}: leasing only tasks that fit`);
    const agent = new Agent(this.agentPort(port, stateDir), {
      endsAt,
      stopBeforeMs: this.options.stopBeforeMs ?? 0,
      agentId: machine.capabilities.agentId,
      host: machine.capabilities.host,
      stateDir,
      slots: machine.slots,
      gpuFreeMiB: new Map(machine.allGpus.map((gpu) => [gpu.index, gpu.memoryFreeMiB])),
      readGpuFreeMiB: async () =>
        new Map(
          (await probeGpus({ env: this.options.env ?? process.env })).map((gpu) => [
            gpu.index,
            gpu.memoryFreeMiB,
          ]),
        ),
      cpuCount: availableParallelism(),
      tags: machine.capabilities.tags,
      heartbeatMs,
      graceMs: this.options.graceMs,
      ...(this.options.checkpointRoot !== undefined && { checkpointRoot: this.options.checkpointRoot }),
      env: this.options.env,
      onEvent: (event) => this.onAgentEvent(event, port, stateDir),
    });
    this.agent = agent;
    if (this.terminating) agent.terminateRunning(this.terminating);
    else if (this.stop.signal.aborted) agent.stopLeasing();
    const exit = await agent.run().catch((error: unknown) => {
      agent.terminateRunning(); // their reports wait in the outbox for the next start
      throw error;
    });
    if (this.fatal) throw this.fatal;
    return exit;
  }

  /**
   * Sends the reports a previous incarnation left in the outbox, then reports as lost the
   * attempts the coordinator still thinks this agent runs (they died with it): back to pending,
   * no retry spent — but a loss, counted against `max_lost`, as the task may be what killed it.
   */
  private async settlePrevious(port: HttpPort, outbox: Outbox, openAttempts: number[]): Promise<void> {
    const reported = new Set(outbox.pending());
    if (reported.size > 0) this.log.info(`sending ${reported.size} report(s) left from a previous run`);
    const error = "its agent ended while it ran (found open when the agent started again)";
    for (const attemptId of openAttempts)
      if (!reported.has(attemptId)) await port.finish(attemptId, { outcome: { kind: "lost", error } });
    await outbox.flush({ signal: this.stop.signal });
  }

  /** The port the dispatch loop sees: HTTP, plus local cwd checks, running files and logs. */
  private agentPort(port: HttpPort, stateDir: string): CoordinatorPort {
    return {
      lease: (request) => leaseRunnable(port, request, this.options.workdir, this.log),
      awaitWork: (maxWaitMs) => port.awaitWork(maxWaitMs),
      heartbeat: async (attemptIds) =>
        port.heartbeat(
          attemptIds,
          this.machine ? await gpuSamples(this.machine, this.options.env) : undefined,
        ),
      started: async (attemptId, pid, logPath) => {
        recordRunning(stateDir, { attemptId, pid, logPath, startedAt: Date.now() });
        await port.started(attemptId, pid, logPath);
      },
      finish: async (attemptId, report) => {
        const stream = this.streams.get(attemptId);
        this.streams.delete(attemptId);
        await port.finish(attemptId, report, await stream?.finish());
      },
      isFinished: () => port.isFinished(),
      claimableCount: () => port.claimableCount(),
      unsentReports: () => port.unsentReports(),
      points: (batches) => postPoints(port.client, (this.machine as Machine).capabilities.agentId, batches),
    };
  }

  private onAgentEvent(event: AgentEvent, port: HttpPort, stateDir: string): void {
    const { lease } = event;
    // The task's own attempt number (1 for its first), not the ledger-wide attempt id.
    const what = `task ${lease.task.id} (attempt ${lease.attemptNumber})`;
    if (event.kind === "started") {
      const gpus = lease.gpuIds.length > 0 ? ` on GPU ${lease.gpuIds.join(",")}` : "";
      this.log.info(`${what} started${gpus}: ${lease.task.command}`);
      const stream = new LogStream({
        logPath: attemptFiles(stateDir, lease.task.id, lease.attemptNumber).logPath,
        send: (offset, text) => port.sendLog(lease.attemptId, offset, text),
      });
      this.streams.set(lease.attemptId, stream);
      stream.start();
      return;
    }
    forgetRunning(stateDir, lease.attemptId);
    const outcome = event.outcome;
    this.log.info(`${what} ${outcome.kind}${"error" in outcome ? `: ${outcome.error}` : ""}`);
  }

  private onChannelEvent(event: ChannelEvent, port: HttpPort): void {
    if (event.type === "work") port.notifyWork();
    else if (event.type === "done") port.sweepDone();
    else if (event.type === "cancel") {
      this.log.info(`the coordinator cancelled attempt(s) ${event.attemptIds.join(", ")}`);
      this.agent?.abandon(event.attemptIds);
    }
  }

  private onError(error: unknown): void {
    if (error instanceof UnauthorizedError) {
      if (this.fatal) return;
      this.fatal = error;
      this.terminate();
      return;
    }
    this.log.info(`${error instanceof Error ? error.message : String(error)}`);
  }

  /** Waits for reports still on their way, then exits as asked. */
  private async finish(
    outbox: Outbox,
    kind: RemoteAgentExit["kind"],
    http: HttpPort,
  ): Promise<RemoteAgentExit> {
    if (this.fatal) throw this.fatal;
    const sent = await outbox.flush({ timeoutMs: kind === "done" ? 60_000 : 10_000 });
    if (this.fatal) throw this.fatal;
    if (kind === "done") for (const why of http.unfit) this.log.info(`nothing here fits ${why}`);
    if (!sent)
      this.log.info(
        `${outbox.pending().length} report(s) not sent yet; kept in ${outbox.dir} and sent at the next start`,
      );
    // Said before the channel closes (`finally` above), so the coordinator sees an exit, not a loss.
    else if (kind !== "unreachable") await http.goodbye();
    return { kind };
  }

  /** Runs `call`; null if the agent was stopped (Ctrl-C) meanwhile. */
  private async unlessStopped<T>(call: () => Promise<T>): Promise<T | null> {
    try {
      return await call();
    } catch (error) {
      if (this.stop.signal.aborted && !(error instanceof UnauthorizedError)) return null;
      throw error;
    }
  }
}
