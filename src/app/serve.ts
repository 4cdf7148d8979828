import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { FastifyInstance } from "fastify";
import { Coordinator } from "../coordinator/coordinator.js";
import { buildApp } from "../coordinator/http/app.js";
import type { AddOptions, Listening } from "../coordinator/http/options.js";
import { Notifications } from "../coordinator/notifications.js";
import { sweepIdentity } from "../coordinator/notifyEvents.js";
import { checkSweep, type OpenSweepOptions } from "../coordinator/openSweep.js";
import { RemoteAgents } from "../coordinator/remoteAgents.js";
import type { LocalMachine } from "../dashboard/machines.js";
import { serverUrl } from "../http/serverUrl.js";
import { clearTextWarning, loadOrCreateTokens, type Tokens } from "../http/tokens.js";
import type { Db } from "../ledger/db.js";
import { evaluateGates } from "../ledger/evaluateGates.js";
import { type SyncReport, syncSweep } from "../ledger/syncSweep.js";
import type { WakeBus } from "../ledger/wakeBus.js";
import { logger, warnOnStderr } from "../log/logger.js";
import type { SlurmAllocator } from "../slurm/allocator.js";
import type { NotifyEntry } from "../sweep/types.js";
import { GpuTelemetry } from "../telemetry/gpuTelemetry.js";
import { type SlurmAllocation, slurmAllocator } from "./slurmAllocation.js";

export interface ServeOptions {
  stateDir: string;
  /** (Default: 127.0.0.1) */
  host?: string;
  /** 0 picks a free port. (Default: 7070) */
  port?: number;
  tokens?: Partial<Tokens>;
  tls?: { certPath: string; keyPath: string };
  /** Lease length without a heartbeat. (Default: 12 s) */
  leaseMs?: number;
  /** Grace for an agent whose connection dropped. (Default: 2 s) */
  disconnectGraceMs?: number;
  warn?: (message: string) => void;
  /**
   * The sweep being served, so `labsweep add` can extend it; `load.yes` (serve's `--yes`) lets
   * the extended sweep stay over the large-grid limit it was started with.
   */
  sweep?: { files: string[]; load: OpenSweepOptions; notify?: readonly NotifyEntry[] };
  /**
   * The coordinator to serve, when this process already has one for the ledger (`labsweep run`
   * shares its own with the dashboard: one ledger, one coordinator). (Default: a new one)
   */
  coordinator?: Coordinator;
  /** GPU readings of the agents, for the dashboard. (Default: a new, empty one) */
  telemetry?: GpuTelemetry;
  /** Serve the dashboard at `/`. (Default: true) */
  dashboard?: boolean;
  /** Machines working in this process, shown on the dashboard. (Default: none) */
  localMachines?: () => LocalMachine[];
  /** Offer the agents' routes; `labsweep run` serves only reads and the dashboard. (Default: true) */
  agentApi?: boolean;
  /**
   * Reads without a token from this machine (peer and Host both loopback): `labsweep run`, and
   * `serve --trust-loopback`. (Default: false)
   */
  trustLoopback?: boolean;
  /** Limits on dashboard event streams (see AppOptions). (Default: 64 streams, 1 MiB each) */
  streams?: { max?: number; bufferLimit?: number };
  /**
   * How this coordinator and the other replicas on one PostgreSQL ledger wake each other's
   * waiting agents; closed with the server. (Default: none, a lone coordinator)
   */
  wakeBus?: WakeBus;
  /** Largest request body taken (413 above it). (Default: REQUEST_BODY_LIMIT_BYTES, 1 MiB) */
  bodyLimit?: number;
  /** Largest artifact file an agent may upload, in bytes (`serve --artifact-limit`). (Default: 1024 MiB) */
  artifactLimitBytes?: number;
  /** Check the routes' JSON schemas against the meta-schema (tests). (Default: false) */
  checkSchemas?: boolean;
  /** `serve --slurm`: submit agent jobs as the queue needs them. (Default: none) */
  slurm?: SlurmAllocation;
  /**
   * Serve on this server, already listening on host and port, instead of listening anew; its
   * owner closes it (`run`'s dashboard, loaded by its first request). (Default: none)
   */
  listening?: Listening;
}

export interface RunningServer {
  url: string;
  tokens: Tokens;
  coordinator: Coordinator;
  agents: RemoteAgents;
  telemetry: GpuTelemetry;
  app: FastifyInstance;
  /** With `slurm`: the allocator. */
  allocator?: SlurmAllocator;
  /** Resolves once every task of the sweep has finished. */
  finished(): Promise<void>;
  close(): Promise<void>;
}

/** How long a stopping coordinator waits for owed notifications; the rest go at its next start. */
const NOTIFY_DRAIN_MS = 5000;

/** How long a finished sweep's coordinator waits for its agents to hear "done" and hang up. */
const DONE_GRACE_MS = 3000;

/** Serves a prepared ledger to agents over HTTP(S). */
export async function startServer(db: Db, options: ServeOptions): Promise<RunningServer> {
  const warn = options.warn ?? warnOnStderr;
  const tokens = loadOrCreateTokens(options.stateDir, options.tokens);
  const { coordinator, notifications } = await coordinatorFor(db, options, warn);
  const telemetry = options.telemetry ?? new GpuTelemetry();
  const agents = new RemoteAgents(coordinator, {
    disconnectGraceMs: options.disconnectGraceMs,
    onEvent: logger("labsweep", warn).info,
    notifications,
  });
  const https = options.tls && {
    cert: readFileSync(options.tls.certPath),
    key: readFileSync(options.tls.keyPath),
  };
  // A quick grid (`serve --command … --set …`) has no config file that `labsweep add` could extend.
  const addConfigs =
    options.sweep && options.sweep.files.length > 0 ? configAdder(db, coordinator, options.sweep) : undefined;
  let url = "";
  const { stateDir } = options;
  // Started once the URL its agents are given is known.
  const allocator =
    options.slurm &&
    slurmAllocator(
      options.slurm,
      { coordinator, agents, stateDir, url: () => url, agentToken: tokens.agent },
      logger("slurm", warn).info,
    );
  const app = buildApp({
    coordinator,
    agents,
    tokens,
    stateDir,
    https,
    warn,
    addConfigs,
    telemetry,
    dashboard: options.dashboard,
    localMachines: options.localMachines,
    // This coordinator leases to its agents (and `run`'s own): it knows what they offer now.
    explainSources: () => ({ offers: coordinator.offers.list(), coordinator: true }),
    agentApi: options.agentApi,
    trustLoopback: options.trustLoopback ?? false,
    maxEventStreams: options.streams?.max,
    streamBufferLimit: options.streams?.bufferLimit,
    bodyLimit: options.bodyLimit,
    artifactLimitBytes: options.artifactLimitBytes,
    checkSchemas: options.checkSchemas,
    allocation: allocator,
    listening: options.listening,
  });
  url = await listen(app, options, Boolean(https), warn, async () => {
    await agents.close();
    await notifications?.stop(0);
  });
  allocator?.start();
  return {
    url,
    tokens,
    coordinator,
    agents,
    telemetry,
    app,
    allocator,
    finished: () => finishedServing(coordinator, agents, allocator),
    async close() {
      await allocator?.stop();
      await agents.close();
      await app.close();
      // Lease requests still held find their connection gone and end now, not at their deadline.
      coordinator.notifyWork();
      await coordinator.drainResults();
      coordinator.stopRetryingResults();
      await notifications?.stop(NOTIFY_DRAIN_MS);
      await options.wakeBus?.close();
    },
  };
}

/** Resolves once every task of the sweep has finished, and its agents have heard. */
async function finishedServing(
  coordinator: Coordinator,
  agents: RemoteAgents,
  allocator: SlurmAllocator | undefined,
): Promise<void> {
  while (!(await coordinator.isFinished())) await coordinator.awaitWork(1000);
  // A flush with its gathering pause, as before run's drain became immediate: an agent whose
  // event channel is reconnecting needs that moment to be told "done". sayDone then waits for
  // every agent heard from lately; an agent sleeping out a backoff retries as soon as any of its
  // requests gets through (CoordinatorClient.pause), so it asks while this serve still listens.
  await coordinator.flushResults();
  await coordinator.drainResults();
  await agents.sayDone(DONE_GRACE_MS);
  // Pending allocations are cancelled now, not at the next look.
  await allocator?.tick();
}

/** Listens as asked and returns the served URL; `undo` runs before a failure to listen is thrown. */
async function listen(
  app: FastifyInstance,
  options: ServeOptions,
  https: boolean,
  warn: (message: string) => void,
  undo: () => Promise<void>,
): Promise<string> {
  const host = options.host ?? "127.0.0.1";
  // A server listening already was warned of by its owner when it bound it.
  const warning = options.listening ? null : clearTextWarning(host, https);
  if (warning) warn(warning);
  try {
    // A server listening already (options.listening) is the app's once the app is ready.
    if (options.listening) await app.ready();
    else await app.listen({ host, port: options.port ?? 7070 });
  } catch (error) {
    await undo();
    throw error;
  }
  return serverUrl(app.server, host, https);
}

/**
 * The coordinator to serve, with the served sweep's notifications started: the one given
 * (`run`'s, which comes with its own notifications), else a new one.
 */
async function coordinatorFor(
  db: Db,
  options: ServeOptions,
  warn: (message: string) => void,
): Promise<{ coordinator: Coordinator; notifications?: Notifications }> {
  if (options.coordinator) return { coordinator: options.coordinator };
  const entries = options.sweep?.notify ?? [];
  const sweep = sweepIdentity(options.sweep?.files ?? []);
  const notifications =
    entries.length > 0
      ? new Notifications(db, entries, { sweep, warn, sole: db.dialect === "sqlite" })
      : undefined;
  const { stateDir, leaseMs, wakeBus } = options;
  const coordinator = new Coordinator(db, { stateDir, leaseMs, warn, wakeBus, notifications });
  await notifications?.start();
  return { coordinator, notifications };
}

/**
 * `labsweep add`'s handler: checks the sweep as it would become and syncs it into the ledger,
 * one add at a time.
 */
function configAdder(
  db: Db,
  coordinator: Coordinator,
  served: ServeOptions["sweep"],
): (files: Array<{ path: string; text: string }>, addOptions?: AddOptions) => Promise<SyncReport> {
  // The text of every config the sweep is made of, in declaration order. Files added over HTTP
  // need not exist on this machine (`labsweep add` runs anywhere), so texts are kept, not paths.
  const sweepTexts = new Map<string, string>(
    (served?.files ?? []).map((file) => [file, readFileSync(file, "utf8")]),
  );
  const syncConfigs = async (
    files: Array<{ path: string; text: string }>,
    addOptions: AddOptions,
  ): Promise<SyncReport> => {
    const texts = new Map(sweepTexts);
    for (const added of files) texts.set(resolve(added.path), added.text);
    const inputs = [...texts].map(([file, text]) => ({ file, text }));
    // The same check `serve` gave its own configs, over the sweep as it would become: a
    // ConfigError here is a 400 with its message, and nothing reaches the ledger.
    const load = served?.load ?? {};
    const sweep = checkSweep(inputs, { ...load, yes: Boolean(load.yes || addOptions.yes) });
    const report = await syncSweep(db, sweep, Date.now());
    coordinator.phasesChanged();
    await evaluateGates(db, Date.now());
    for (const [file, text] of texts) sweepTexts.set(file, text);
    coordinator.notifyWork();
    return report;
  };
  // One `labsweep add` at a time: two interleaved syncs would each miss the other's file and mark
  // its tasks inactive.
  let adding: Promise<unknown> = Promise.resolve();
  return (files, addOptions = {}) => {
    const next = adding.then(() => syncConfigs(files, addOptions));
    adding = next.catch(() => undefined);
    return next;
  };
}
