import { availableParallelism, hostname } from "node:os";
import { resolve } from "node:path";
import { Agent, type AgentEvent, type AgentExit } from "../agent/agent.js";
import { type GpuInfo, probeGpus } from "../agent/gpuProbe.js";
import { killTasksOf } from "../agent/leftovers.js";
import { planSlots, type Slot } from "../agent/slots.js";
import { Coordinator } from "../coordinator/coordinator.js";
import { LOCAL_WORKER_PREFIX } from "../coordinator/runningTasks.js";
import { prepareSnapshots, type SnapshotReport } from "../coordinator/snapshots.js";
import { acquireStateLock } from "../coordinator/stateLock.js";
import type { LocalMachine } from "../dashboard/machines.js";
import type { Db } from "../ledger/db.js";
import { evaluateGates } from "../ledger/evaluateGates.js";
import { openLedger } from "../ledger/openLedger.js";
import { pausedPhases } from "../ledger/pausePhases.js";
import { extendLeases, openAttempts, requeueAttempts } from "../ledger/recoverAbandoned.js";
import { type SyncReport, syncSweep } from "../ledger/syncSweep.js";
import type { GpuSample } from "../protocol/interfaces.js";
import { type DrainOutcome, drainOwedResults } from "../results/resultsWriter.js";
import { type ResumeReport, resumeFromResults } from "../results/resumeScan.js";
import type { Sweep } from "../sweep/loadSweep.js";
import type { GpuTelemetry } from "../telemetry/gpuTelemetry.js";
import { localPort } from "./localPort.js";

export interface PreparedLedger {
  db: Db;
  sync: SyncReport;
  resume: ResumeReport;
  /** Attempts of a previous run that died with it, now back in the queue. */
  requeued: number;
  /** The first drain of owed result rows: what it wrote, and which dirs failed and why. */
  results: DrainOutcome;
  /** Phases `labsweep pause` left paused: their tasks wait for `labsweep resume`. */
  paused: string[];
  /** Snapshots taken at this start (`snapshot: true`), and how many were kept from before. */
  snapshots: SnapshotReport;
  release: () => void;
}

/**
 * Takes the state dir for this process and brings its ledger up to date: leftovers of a killed
 * previous run are cleaned up and requeued, the configs are synced in, and result CSVs (also the
 * original system's) mark what is already done. Owed result rows are written out.
 */
export async function prepareLedger(
  stateDir: string,
  sweep: Sweep,
  now = Date.now(),
  options: {
    /**
     * Attempts of remote agents outlive a coordinator restart: give them a fresh lease to
     * reconnect and report (outbox) instead of requeueing them. (Default: 0, requeue all)
     */
    remoteGraceMs?: number;
    /** Take new snapshots of configs with `snapshot: true` (run --refresh-snapshot). (Default: false) */
    refreshSnapshot?: boolean;
  } = {},
): Promise<PreparedLedger> {
  const release = acquireStateLock(stateDir);
  let db: Db | null = null;
  try {
    db = await openLedger(stateDir);
    const open = await openAttempts(db);
    // Attempts of the in-process agent died with the previous process; remote agents' did not.
    const remote = options.remoteGraceMs
      ? open.filter((attempt) => !attempt.worker.startsWith(LOCAL_WORKER_PREFIX))
      : [];
    const abandoned = open.filter(
      (attempt) =>
        !remote.includes(attempt) && !runsInAnotherLiveRun(attempt.worker, attempt.lease_expires, now),
    );
    if (remote.length > 0)
      await extendLeases(
        db,
        remote.map((attempt) => attempt.id),
        now + (options.remoteGraceMs ?? 0),
      );
    killTasksOf(resolve(stateDir));
    const why = "its labsweep process ended while it ran";
    // Interrupted, not lost: a killed `labsweep run` is stopped for good, and starting it again
    // is someone's decision, so it spends no loss (max_lost guards what restarts unattended:
    // agents under a supervisor or a SLURM requeue) and a sweep resumed after any number of
    // kills still runs every task.
    const { requeued } = await requeueAttempts(db, abandoned, why, now, "interrupted");
    const sync = await syncSweep(db, sweep, now);
    // After the sync (a config's phases exist), before anything is leased from this start.
    const snapshots = await prepareSnapshots(db, sweep, stateDir, { refresh: options.refreshSnapshot, now });
    await evaluateGates(db, now);
    // The scan must precede the writer: it is how a row written just before a crash is recognised.
    const resume = await resumeFromResults(db, now);
    await evaluateGates(db, now);
    // A dir that cannot be written fails alone (recorded in the ledger), never the start.
    const results = await drainOwedResults(db);
    return { db, sync, resume, requeued, results, paused: await pausedPhases(db), snapshots, release };
  } catch (error) {
    await db?.close();
    release();
    throw error;
  }
}

export interface LocalRunOptions {
  stateDir: string;
  /** Exactly this many slots. (Default: one per GPU with ≥ 4 GB free, else one per CPU core) */
  slots?: number;
  /** Only these GPU indices. (Default: all) */
  gpus?: number[];
  /** Tags this machine offers: tasks with resources.tags run only if it offers them all. (Default: none) */
  tags?: string[];
  /** Stop signal → SIGKILL grace where a phase sets no stop_grace. (Default: 30 s) */
  graceMs?: number;
  /** This machine's checkpoint root; wins over checkpoint_root. (Default: none) */
  checkpointRoot?: string;
  env?: NodeJS.ProcessEnv;
  onEvent?: (event: AgentEvent) => void;
  /** Called with the agent once it runs, so signal handlers can stop it. */
  onAgent?: (agent: Agent) => void;
  /** The coordinator to run against, when the caller also serves it (the dashboard). (Default: a new one) */
  coordinator?: Coordinator;
  /** Where this machine's GPU readings go, under the local worker's name. (Default: not sampled) */
  telemetry?: GpuTelemetry;
  /** How often GPUs are read for `telemetry`. (Default: 3 s) */
  telemetryEveryMs?: number;
  /** Called with this machine's description once its slots are planned (for the dashboard). */
  onMachine?: (machine: LocalMachine) => void;
  /** Notices of background failures the agent survived. (Default: stderr) */
  warn?: (message: string) => void;
}

export interface LocalRunResult {
  exit: AgentExit;
  slots: Slot[];
}

/** Runs the sweep's tasks on this machine: an in-process coordinator and one local agent. */
export async function runLocally(db: Db, options: LocalRunOptions): Promise<LocalRunResult> {
  const coordinator = options.coordinator ?? new Coordinator(db, { stateDir: options.stateDir });
  const gpus = await probeGpus({ env: options.env ?? process.env });
  const agentId = `${LOCAL_WORKER_PREFIX}${hostname()}-${process.pid}`;
  const slots = planSlots({
    gpus,
    cpuCount: availableParallelism(),
    slotsOverride: options.slots,
    gpuFilter: options.gpus,
  });
  const agent = new Agent(localPort(coordinator), {
    agentId,
    host: hostname(),
    stateDir: options.stateDir,
    slots,
    gpuFreeMiB: new Map(gpus.map((gpu) => [gpu.index, gpu.memoryFreeMiB])),
    readGpuFreeMiB: async () =>
      new Map(
        (await probeGpus({ env: options.env ?? process.env })).map((gpu) => [gpu.index, gpu.memoryFreeMiB]),
      ),
    cpuCount: availableParallelism(),
    tags: options.tags ?? [],
    graceMs: options.graceMs,
    ...(options.checkpointRoot !== undefined && { checkpointRoot: options.checkpointRoot }),
    env: options.env,
    onEvent: options.onEvent,
    warn: options.warn,
  });
  options.onMachine?.({
    id: agentId,
    name: hostname(),
    host: hostname(),
    slots: slots.length,
    gpus: gpus.map((gpu) => ({ index: gpu.index, name: gpu.name, memoryTotalMiB: gpu.memoryTotalMiB })),
    since: Date.now(),
  });
  const stopSampling = options.telemetry
    ? sampleGpus(
        agentId,
        gpus,
        options.telemetry,
        options.telemetryEveryMs ?? 3000,
        options.env ?? process.env,
      )
    : async () => undefined;
  options.onAgent?.(agent);
  let exit: AgentExit;
  try {
    exit = await agent.run();
  } finally {
    await stopSampling();
  }
  await coordinator.drainResults();
  await evaluateGates(db, Date.now());
  return { exit, slots };
}

/** Reads this machine's GPUs into `telemetry` every `everyMs`; returns the function that stops it. */
function sampleGpus(
  agentId: string,
  first: GpuInfo[],
  telemetry: GpuTelemetry,
  everyMs: number,
  env: NodeJS.ProcessEnv,
): () => Promise<void> {
  if (first.length === 0) return async () => undefined;
  const record = (gpus: GpuInfo[]): void => telemetry.record(agentId, Date.now(), gpus.map(toSample));
  record(first);
  let reading: Promise<void> | null = null;
  const timer = setInterval(() => {
    if (reading) return;
    reading = probeGpus({ env })
      .then(record)
      // A reading that fails (a busy driver) is a gap in the dashboard's plot, not a failure of the run.
      .catch(() => undefined)
      .finally(() => {
        reading = null;
      });
  }, everyMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await reading;
  };
}

function toSample(gpu: GpuInfo): GpuSample {
  return {
    index: gpu.index,
    // NaN (JSON null) when the GPU does not report utilisation.
    utilizationPct: gpu.utilizationPercent ?? Number.NaN,
    memoryUsedMiB: gpu.memoryUsedMiB,
    memoryTotalMiB: gpu.memoryTotalMiB,
  };
}

/**
 * Whether an attempt belongs to another `labsweep run` that is still alive — one sharing this
 * ledger through --store (a PostgreSQL database, or one SQLite file from two state dirs): on this
 * host, its process is still there; elsewhere, its lease is still being renewed. Those are not
 * this start's to requeue.
 */
function runsInAnotherLiveRun(worker: string, leaseExpires: number | null, now: number): boolean {
  const match = /^local-(.*)-(\d+)$/.exec(worker);
  if (!match) return false;
  const [, host, pidText] = match;
  const pid = Number(pidText);
  if (leaseExpires !== null && Number(leaseExpires) < now) return false;
  if (host !== hostname()) return true;
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
