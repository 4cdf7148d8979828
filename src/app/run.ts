import { dirname } from "node:path";
import type { Agent, AgentEvent } from "../agent/agent.js";
import { sharedLauncher } from "../agent/launcher.js";
import { Coordinator } from "../coordinator/coordinator.js";
import { Notifications } from "../coordinator/notifications.js";
import { sweepIdentity } from "../coordinator/notifyEvents.js";
import { openSweep } from "../coordinator/openSweep.js";
import type { LocalMachine } from "../dashboard/machines.js";
import { type LazyListener, listenLazily } from "../http/lazyListener.js";
import { clearTextWarning, isLoopback, loadOrCreateTokens } from "../http/tokens.js";
import type { Db } from "../ledger/db.js";
import { pendingResources } from "../ledger/pendingResources.js";
import { taskCounts } from "../ledger/taskCounts.js";
import { type Capacity, whyNoFit } from "../protocol/capacity.js";
import { GpuTelemetry } from "../telemetry/gpuTelemetry.js";
import { EXIT } from "./exitCodes.js";
import { Interrupts } from "./interrupts.js";
import { type LocalRunResult, type PreparedLedger, prepareLedger, runLocally } from "./localRun.js";
import { reportOwedRows } from "./owedRows.js";
import { type ProgressSink, startProgress } from "./progress.js";

/** Where a run's progress and notes go (the CLI's ProgressView). */
export interface RunView extends ProgressSink {
  /** The run is over: the last progress line stays. */
  finish(): void;
}

export interface RunOptions {
  stateDir: string;
  /** (Default: one per GPU with ≥ 4 GB free, else one per CPU core) */
  slots?: number;
  /** Only these GPU indices. (Default: all) */
  gpus?: number[];
  /** Tags this machine offers to tasks' resources.tags. */
  tags: string[];
  /** Stop signal → SIGKILL grace where a phase sets no stop_grace. (Default: 30 s) */
  graceMs?: number;
  /** This machine's checkpoint root; wins over checkpoint_root. (Default: none) */
  checkpointRoot?: string;
  /** The command of configs that name none; with no config, a quick grid's. (Default: none) */
  command?: string;
  /** `--set` overrides, `[PHASE.]PARAM=VALUES`. (Default: none) */
  overrides?: string[];
  /** Take a grid over the large-grid limit. (Default: false) */
  yes?: boolean;
  /** Take new snapshots of configs with `snapshot: true` (--refresh-snapshot). (Default: false) */
  refreshSnapshot?: boolean;
  /** Where the dashboard listens; null for none. */
  dashboard: { host: string; port: number } | null;
  view: RunView;
  /** The verdict's lines. (Default: stderr) */
  write?: (text: string) => void;
}

/**
 * `labsweep run`'s composition root: opens the sweep and its ledger, serves the dashboard, runs
 * the tasks on this machine with the two-stage Ctrl-C and progress, and says how it ended.
 * Returns the exit code (see exitVerdict).
 */
export async function runSweep(configs: string[], options: RunOptions): Promise<number> {
  const { stateDir, view, tags } = options;
  const { command: defaultCommand, overrides, yes, refreshSnapshot } = options;
  // The launcher (python3) starts beside the config's parsing and the ledger's opening: its
  // start-up, not ours, is what the first task would otherwise wait for.
  sharedLauncher().warm();
  const sweep = openSweep(configs, { defaultCommand, overrides, yes });
  const prepared = await prepareLedger(stateDir, sweep, Date.now(), { refreshSnapshot });
  const { db } = prepared;
  announce(prepared, stateDir, view);
  const running = new Map<number, string>();
  let agent: Agent | null = null;
  const interrupts = new Interrupts({
    stopping: () =>
      view.note(
        `labsweep: stopping — no new tasks; waiting for ${running.size} running (Ctrl-C again to terminate them)`,
      ),
    terminating: () =>
      view.note("labsweep: terminating running tasks (SIGTERM, then SIGKILL after the grace period)"),
  });
  const notifications = new Notifications(db, sweep.notify, {
    sweep: sweepIdentity(sweep.files),
    warn: (message) => view.note(message),
    sole: db.dialect === "sqlite",
  });
  const coordinator = new Coordinator(db, { stateDir, warn: (message) => view.note(message), notifications });
  await notifications.start();
  // A dir that failed at start is tried again while the run goes on, not only after a success.
  if (prepared.results.failed.length > 0) void coordinator.flushResults();
  const telemetry = new GpuTelemetry();
  const machines: LocalMachine[] = [];
  const server =
    options.dashboard === null
      ? null
      : await startDashboard(db, {
          ...options.dashboard,
          stateDir,
          coordinator,
          telemetry,
          machines,
          note: (message) => view.note(message),
        });
  // Tasks the agent holds ahead are running in the ledger but wait here: shown as pending.
  const progress = startProgress(db, view, running, () => agent?.ahead.heldCount ?? 0);
  try {
    const result = await runLocally(db, {
      stateDir,
      slots: options.slots,
      gpus: options.gpus,
      tags,
      graceMs: options.graceMs,
      ...(options.checkpointRoot !== undefined && { checkpointRoot: options.checkpointRoot }),
      coordinator,
      telemetry,
      onMachine: (machine) => machines.push(machine),
      warn: (message) => view.note(message),
      onAgent: (started) => {
        agent = started;
        // Told at once of a Ctrl-C while the machine was being probed, before there was an agent.
        interrupts.attach(started);
      },
      onEvent: (event) => trackRunning(running, event),
    });
    progress.stop();
    await progress.refresh(true);
    view.finish();
    const write = options.write ?? ((text: string) => process.stderr.write(text));
    return await exitVerdict(db, result, { tags, stateDir, write });
  } finally {
    progress.stop();
    interrupts.dispose();
    await server?.close();
    coordinator.stopRetryingResults();
    // The sweep's last notifications (it finished) go out before the run ends, if they can soon.
    await notifications.stop(NOTIFY_DRAIN_MS);
    await db.close();
    prepared.release();
  }
}

/**
 * How long a run that ends waits for owed notifications (a retried endpoint included); what is
 * still owed then is sent by the next `run` or `serve` of this state dir.
 */
const NOTIFY_DRAIN_MS = 10_000;

/** What the ledger holds now, and what result dirs cannot be written. */
function announce(prepared: PreparedLedger, stateDir: string, view: RunView): void {
  const { sync, resume } = prepared;
  view.note(
    `labsweep: ${sync.unique} unique tasks (${sync.merged} merged, ${sync.added} new${sync.dropped ? `, ${sync.dropped} no longer in the configs` : ""}); ${resume.found} found complete in result CSVs${prepared.requeued ? `; ${prepared.requeued} interrupted tasks requeued` : ""}; state in ${stateDir}`,
  );
  if (prepared.paused.length > 0)
    view.note(
      `labsweep: paused (nothing of it starts until \`labsweep resume\`): ${prepared.paused.join(", ")}`,
    );
  for (const taken of prepared.snapshots.taken)
    view.note(
      `labsweep: snapshot of ${dirname(taken.configFile)} (${taken.files} files${taken.git ? `, commit ${taken.git.commit.slice(0, 12)}${taken.git.dirty ? " with uncommitted changes" : ""}` : ""}) in ${taken.dir}: tasks run from it`,
    );
  for (const failed of prepared.results.failed)
    view.note(`labsweep: cannot write results to ${failed.outputDir}: ${failed.error}`);
}

/** What runs now, by attempt id, for the progress line. */
function trackRunning(running: Map<number, string>, event: AgentEvent): void {
  if (event.kind === "started") {
    const gpu = event.lease.gpuIds.length ? ` gpu ${event.lease.gpuIds.join(",")}` : "";
    running.set(event.lease.attemptId, `task ${event.lease.task.id}${gpu}: ${event.lease.task.command}`);
  } else running.delete(event.lease.attemptId);
}

/**
 * Says how the run ended and returns its exit code: 0 when everything succeeded and every result
 * row is on disk; 1 for failures, blocked tasks, owed rows or tasks this machine cannot fit;
 * 130 when stopped by Ctrl-C.
 */
async function exitVerdict(
  db: Db,
  result: LocalRunResult,
  context: { tags: string[]; stateDir: string; write: (text: string) => void },
): Promise<number> {
  const { tags, stateDir, write } = context;
  const counts = await taskCounts(db);
  const owed = await reportOwedRows(db, write);
  if (result.exit.kind === "stuck") {
    const gpuList = [...new Set(result.slots.flatMap((slot) => slot.gpuIndices))].join(",") || "none";
    write(
      `labsweep: ${result.exit.claimable} tasks need more than this machine offers (${result.slots.length} slots; GPUs: ${gpuList}; tags: ${tags.join(",") || "none"}); see their resources in the config${tags.length === 0 ? " (tasks with resources.tags need --tag)" : ""}\n`,
    );
    for (const line of await whyStuck(db, result.exit.idle)) write(`  ${line}\n`);
    return EXIT.failed;
  }
  if (result.exit.kind === "stopped") {
    write("labsweep: stopped; run the same command again to resume\n");
    return EXIT.interrupted;
  }
  write(
    `labsweep: finished — ${counts.succeeded} succeeded, ${counts.failed} failed, ${counts.blocked} blocked${counts.failed ? ` (see ${stateDir}/failed_experiments.csv; \`labsweep retry --failed\` to try again)` : ""}\n`,
  );
  return counts.failed > 0 || counts.blocked > 0 || owed > 0 ? EXIT.failed : EXIT.ok;
}

/**
 * Serves the dashboard for this run: its port is bound and its URL told now, its app loaded by
 * the first request (listenLazily). It is a view, not the run: when it cannot start (the port is
 * taken) the run goes on without it.
 */
async function startDashboard(
  db: Db,
  options: {
    stateDir: string;
    host: string;
    port: number;
    coordinator: Coordinator;
    telemetry: GpuTelemetry;
    machines: LocalMachine[];
    note: (message: string) => void;
  },
): Promise<LazyListener | null> {
  const warning = clearTextWarning(options.host, false);
  if (warning) options.note(warning);
  try {
    // Made now, not by the first request: `labsweep token --viewer` gives the link's token at once.
    loadOrCreateTokens(options.stateDir);
    const server = await listenLazily(options.host, options.port, async (listening, route) => {
      try {
        const { startServer } = await import("./serve.js");
        return await startServer(db, {
          stateDir: options.stateDir,
          host: options.host,
          listening: { server: listening, route },
          coordinator: options.coordinator,
          telemetry: options.telemetry,
          localMachines: () => options.machines,
          agentApi: false,
          // `run` is one user's sweep on their own machine: its dashboard opens from there with no token.
          trustLoopback: true,
          warn: options.note,
        });
      } catch (error) {
        options.note(`labsweep: dashboard failed: ${error instanceof Error ? error.message : String(error)}`);
        throw error;
      }
    });
    const remote = !(isLoopback(options.host) || options.host.toLowerCase() === "localhost");
    options.note(
      `labsweep: dashboard at ${server.url}/${remote ? ` (from other machines add ?token= and the output of \`labsweep token --viewer --state ${options.stateDir}\`)` : ""}`,
    );
    return server;
  } catch (error) {
    options.note(
      `labsweep: dashboard not started: ${error instanceof Error ? error.message : String(error)}`,
    );
    return null;
  }
}

/** Per phase whose claimable tasks fit nowhere on this machine, which resource is short. */
async function whyStuck(db: Db, idle: Capacity): Promise<string[]> {
  const lines: string[] = [];
  for (const pending of await pendingResources(db, Date.now())) {
    const why = whyNoFit(pending.resources, idle);
    if (why) lines.push(`phase ${pending.phase} (${pending.count} tasks): ${why}`);
  }
  return lines;
}
