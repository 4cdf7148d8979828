import { resolve } from "node:path";
import type { Agent } from "../agent/agent.js";
import { Interrupts } from "../app/interrupts.js";
import { type LocalRunResult, prepareLedger, runLocally } from "../app/localRun.js";
import { startProgress } from "../app/progress.js";
import { type RunningServer, startServer } from "../app/serve.js";
import { Coordinator } from "../coordinator/coordinator.js";
import { GpuTelemetry } from "../coordinator/gpuTelemetry.js";
import { openSweep } from "../coordinator/openSweep.js";
import type { LocalMachine } from "../dashboard/machines.js";
import { isLoopback } from "../http/tokens.js";
import type { Db } from "../ledger/db.js";
import { pendingResources } from "../ledger/pendingResources.js";
import { taskCounts } from "../ledger/taskCounts.js";
import { type Capacity, whyNoFit } from "../protocol/capacity.js";
import { EXIT } from "./exitCodes.js";
import { gpuList, portNumber, positiveInteger, seconds, tagList } from "./flags.js";
import { reportOwedRows } from "./owedRows.js";
import { ProgressView } from "./progress.js";
import { stateDirFrom } from "./stateDir.js";

export interface RunFlags {
  state?: string;
  slots?: string;
  gpus?: string;
  /** Tags this machine offers to tasks' resources.tags (repeatable, comma-separated allowed). */
  tag?: string[];
  command?: string;
  yes?: boolean;
  grace?: string;
  checkpointRoot?: string;
  progressEvery?: string;
  /** Address the dashboard listens on. (Default: 127.0.0.1) */
  host?: string;
  /** The dashboard's port; 0 picks a free one. (Default: 0) */
  port?: string;
  /** false with --no-dashboard. (Default: true) */
  dashboard?: boolean;
}

export async function runCommand(configs: string[], flags: RunFlags): Promise<number> {
  const slots = flags.slots === undefined ? undefined : positiveInteger("--slots", flags.slots);
  const gpus = flags.gpus === undefined ? undefined : gpuList(flags.gpus);
  const tags = tagList(flags.tag);
  const graceMs = flags.grace === undefined ? undefined : seconds("--grace", flags.grace) * 1000;
  const port = flags.port === undefined ? 0 : portNumber(flags.port);
  const sweep = openSweep(configs, { defaultCommand: flags.command, yes: flags.yes });
  const stateDir = stateDirFrom(flags, configs);
  const prepared = await prepareLedger(stateDir, sweep);
  const { db } = prepared;
  const view = new ProgressView(
    process.stderr,
    flags.progressEvery === undefined ? 10_000 : seconds("--progress-every", flags.progressEvery) * 1000,
  );
  const { sync, resume } = prepared;
  view.note(
    `labsweep: ${sync.unique} unique tasks (${sync.merged} merged, ${sync.added} new${sync.dropped ? `, ${sync.dropped} no longer in the configs` : ""}); ${resume.found} found complete in result CSVs${prepared.requeued ? `; ${prepared.requeued} interrupted tasks requeued` : ""}; state in ${stateDir}`,
  );
  for (const failed of prepared.results.failed)
    view.note(`labsweep: cannot write results to ${failed.outputDir}: ${failed.error}`);
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
  const coordinator = new Coordinator(db, { stateDir, warn: (message) => view.note(message) });
  // A dir that failed at start is tried again while the run goes on, not only after a success.
  if (prepared.results.failed.length > 0) void coordinator.flushResults();
  const telemetry = new GpuTelemetry();
  const machines: LocalMachine[] = [];
  const server =
    flags.dashboard === false
      ? null
      : await startDashboard(db, {
          stateDir,
          host: flags.host ?? "127.0.0.1",
          port,
          coordinator,
          telemetry,
          machines,
          note: (message) => view.note(message),
        });
  // Tasks the agent holds ahead are running in the ledger but wait here: shown as pending.
  const progress = startProgress(db, view, running, () => agent?.heldCount ?? 0);
  try {
    const result = await runLocally(db, {
      stateDir,
      slots,
      gpus,
      tags,
      graceMs,
      ...(flags.checkpointRoot !== undefined && { checkpointRoot: resolve(flags.checkpointRoot) }),
      coordinator,
      telemetry,
      onMachine: (machine) => machines.push(machine),
      warn: (message) => view.note(message),
      onAgent: (started) => {
        agent = started;
        // Told at once of a Ctrl-C while the machine was being probed, before there was an agent.
        interrupts.attach(started);
      },
      onEvent: (event) => {
        if (event.kind === "started") {
          const gpu = event.claim.gpuIds.length ? ` gpu ${event.claim.gpuIds.join(",")}` : "";
          running.set(
            event.claim.attemptId,
            `task ${event.claim.task.id}${gpu}: ${event.claim.task.command}`,
          );
        } else running.delete(event.claim.attemptId);
      },
    });
    progress.stop();
    await progress.refresh(true);
    view.finish();
    return await exitVerdict(db, result, { tags, stateDir });
  } finally {
    progress.stop();
    interrupts.dispose();
    await server?.close();
    coordinator.stopRetryingResults();
    await db.close();
    prepared.release();
  }
}

/**
 * Says how the run ended and returns its exit code: 0 when everything succeeded and every result
 * row is on disk; 1 for failures, blocked tasks, owed rows or tasks this machine cannot fit;
 * 130 when stopped by Ctrl-C.
 */
async function exitVerdict(
  db: Db,
  result: LocalRunResult,
  context: { tags: string[]; stateDir: string },
): Promise<number> {
  const { tags, stateDir } = context;
  const counts = await taskCounts(db);
  const owed = await reportOwedRows(db, (text) => process.stderr.write(text));
  if (result.exit.kind === "stuck") {
    const gpuList = [...new Set(result.slots.flatMap((slot) => slot.gpuIndices))].join(",") || "none";
    process.stderr.write(
      `labsweep: ${result.exit.claimable} tasks need more than this machine offers (${result.slots.length} slots; GPUs: ${gpuList}; tags: ${tags.join(",") || "none"}); see their resources in the config${tags.length === 0 ? " (tasks with resources.tags need --tag)" : ""}\n`,
    );
    for (const line of await whyStuck(db, result.exit.idle)) process.stderr.write(`  ${line}\n`);
    return EXIT.failed;
  }
  if (result.exit.kind === "stopped") {
    process.stderr.write("labsweep: stopped; run the same command again to resume\n");
    return EXIT.interrupted;
  }
  process.stderr.write(
    `labsweep: finished — ${counts.succeeded} succeeded, ${counts.failed} failed, ${counts.blocked} blocked${counts.failed ? ` (see ${stateDir}/failed_experiments.csv; \`labsweep retry --failed\` to try again)` : ""}\n`,
  );
  return counts.failed > 0 || counts.blocked > 0 || owed > 0 ? EXIT.failed : EXIT.ok;
}

/**
 * Serves the dashboard for this run. It is a view, not the run: when it cannot start (the port
 * is taken) the run goes on without it.
 */
async function startDashboard(
  db: Awaited<ReturnType<typeof prepareLedger>>["db"],
  options: {
    stateDir: string;
    host: string;
    port: number;
    coordinator: Coordinator;
    telemetry: GpuTelemetry;
    machines: LocalMachine[];
    note: (message: string) => void;
  },
): Promise<RunningServer | null> {
  try {
    const server = await startServer(db, {
      stateDir: options.stateDir,
      host: options.host,
      port: options.port,
      coordinator: options.coordinator,
      telemetry: options.telemetry,
      localMachines: () => options.machines,
      agentApi: false,
      // `run` is one user's sweep on their own machine: its dashboard opens from there with no token.
      trustLoopback: true,
      warn: options.note,
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
async function whyStuck(db: Parameters<typeof pendingResources>[0], idle: Capacity): Promise<string[]> {
  const lines: string[] = [];
  for (const pending of await pendingResources(db, Date.now())) {
    const why = whyNoFit(pending.resources, idle);
    if (why) lines.push(`phase ${pending.phase} (${pending.count} tasks): ${why}`);
  }
  return lines;
}
