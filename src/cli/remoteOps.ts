import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { LiveCounts, LivePhase } from "../coordinator/liveCounts.js";
import type { StatusReport } from "../coordinator/statusReport.js";
import { listAgents } from "../ledger/agents.js";
import { openLedgerReadOnly } from "../ledger/openLedger.js";
import { ALLOCATIONS_FILE, type AllocationReport, readAllocationReport } from "../slurm/allocator.js";
import { allocationLines } from "./allocationLines.js";
import { callApi, type Power, type ServerFlags, serverFrom } from "./apiClient.js";
import { EXIT, UsageError } from "./exitCodes.js";
import { stateDirFrom } from "./stateDir.js";
import { printStatus } from "./status.js";

function requireServer(flags: ServerFlags, what: string, power: Power = "read") {
  const server = serverFrom(flags, power);
  if (!server)
    throw new UsageError(
      `${what} talks to a running coordinator: pass --server URL (or set LABSWEEP_SERVER)`,
    );
  return server;
}

interface AgentView {
  id: string;
  /** Its `--name` (default: the hostname). */
  name: string;
  host: string;
  state: string;
  last_seen: number;
  lost_at: number | null;
  lost_reason: string | null;
  running: number;
  info: {
    slots?: number;
    gpus?: Array<{ index: number }>;
    tags?: string[];
    slurm?: { jobId: string; arrayTaskId: string | null } | null;
  };
}

/** `labsweep agents`: from a coordinator (--server) or the local ledger. */
export async function agentsCommand(
  configs: string[],
  flags: ServerFlags & { state?: string; json?: boolean },
): Promise<number> {
  const server = serverFrom(flags);
  let agents: AgentView[];
  let allocation: AllocationReport | null;
  if (server) {
    const body = (await callApi(server, "GET", "/agents")).json as {
      agents: AgentView[];
      allocation?: AllocationReport | null;
    };
    agents = body.agents;
    allocation = body.allocation ?? null;
  } else {
    const stateDir = stateDirFrom(flags, configs);
    // As `serve --slurm` last saw them.
    allocation = readAllocationReport(join(stateDir, ALLOCATIONS_FILE));
    const db = openLedgerReadOnly(stateDir);
    if (!db) throw new UsageError("no ledger here: pass --server URL or --state DIR");
    try {
      agents = (await listAgents(db)).map(({ info_json, ...agent }) => ({
        ...agent,
        info: JSON.parse(info_json),
      }));
    } finally {
      await db.close();
    }
  }
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ agents, allocation })}\n`);
    return EXIT.ok;
  }
  if (allocation) for (const line of allocationLines(allocation, true)) process.stdout.write(`${line}\n`);
  if (agents.length === 0) process.stdout.write("no agents have registered\n");
  for (const agent of agents) {
    const gpus = agent.info.gpus?.map((gpu) => gpu.index).join(",") || "none";
    const seen = `${Math.round((Date.now() - agent.last_seen) / 1000)}s ago`;
    const lost =
      agent.state === "lost"
        ? ` — lost ${new Date(agent.lost_at ?? 0).toISOString()} (${agent.lost_reason}); its tasks were requeued`
        : "";
    // Its --name, with the host beside it when the name is not the host's.
    const where = agent.name && agent.name !== agent.host ? `${agent.name} on ${agent.host}` : agent.host;
    const slurm = agent.info.slurm
      ? ` slurm ${agent.info.slurm.jobId}${agent.info.slurm.arrayTaskId ? `_${agent.info.slurm.arrayTaskId}` : ""}`
      : "";
    process.stdout.write(
      `${where}: ${agent.state}, ${agent.running} running, ${agent.info.slots ?? "?"} slots, GPUs ${gpus}, seen ${seen}${slurm}${lost}\n`,
    );
  }
  return EXIT.ok;
}

export async function cancelCommand(
  taskIds: string[],
  flags: ServerFlags & { phase?: string },
): Promise<number> {
  const server = requireServer(flags, "cancel", "admin");
  if (taskIds.length === 0 && !flags.phase) throw new UsageError("name tasks to cancel, or --phase P");
  const ids = taskIds.map((text) => {
    const id = Number(text);
    if (!Number.isInteger(id) || id < 1) throw new UsageError(`task ids are whole numbers, got "${text}"`);
    return id;
  });
  const { json } = await callApi(server, "POST", "/cancel", { taskIds: ids, phase: flags.phase });
  process.stdout.write(`${(json as { cancelled: number }).cancelled} task(s) cancelled\n`);
  return EXIT.ok;
}

export async function addCommand(configs: string[], flags: ServerFlags & { yes?: boolean }): Promise<number> {
  const server = requireServer(flags, "add", "admin");
  const files = configs.map((path) => {
    try {
      return { path: resolve(path), text: readFileSync(path, "utf8") };
    } catch (error) {
      throw new UsageError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
  });
  // The coordinator checks them as `serve` checked its own (schema, grid size, writable output
  // dirs, on its machine, where results are written); a refusal is a 400 → exit 2.
  const { json } = await callApi(server, "POST", "/configs", { files, yes: Boolean(flags.yes) });
  const report = json as { unique: number; added: number; merged: number };
  process.stdout.write(
    `added: ${report.added} new tasks (${report.unique} unique in the sweep, ${report.merged} merged)\n`,
  );
  return EXIT.ok;
}

export async function remoteRetry(flags: ServerFlags & { phase?: string }): Promise<number> {
  const server = requireServer(flags, "retry --server", "admin");
  const { json } = await callApi(server, "POST", "/retry", { phase: flags.phase });
  process.stdout.write(`${(json as { retried: number }).retried} failed task(s) will run again\n`);
  return EXIT.ok;
}

/**
 * `labsweep logs TASK [-f]`: the latest attempt's log, followed until the attempt ends. Read in
 * pieces from an offset (the coordinator answers at most 1 MiB at a time), so neither side ever
 * holds a whole log.
 */
export async function logsCommand(
  taskId: string,
  flags: ServerFlags & { follow?: boolean; attempt?: string; state?: string },
): Promise<number> {
  const server = requireServer(flags, "logs");
  if (!/^\d+$/.test(taskId)) throw new UsageError(`task ids are whole numbers, got "${taskId}"`);
  const attempt = flags.attempt ? `&attempt=${encodeURIComponent(flags.attempt)}` : "";
  let next = 0;
  for (;;) {
    const { bytes, headers } = await callApi(server, "GET", `/tasks/${taskId}/log?offset=${next}${attempt}`);
    const size = Number(headers.get("x-labsweep-log-size") ?? 0);
    if (size < next) {
      // The coordinator trimmed the log to its tail: go on from the start of what it kept.
      process.stderr.write("labsweep: [… the coordinator dropped earlier output …]\n");
      next = 0;
      continue;
    }
    await writeOut(bytes);
    next += bytes.length;
    if (next < size) continue; // more is there already
    if (!flags.follow || headers.get("x-labsweep-attempt-ended") === "1") return EXIT.ok;
    await new Promise((resolveWait) => setTimeout(resolveWait, 1000));
  }
}

/** Writes to stdout and waits until it is taken: a slow pipe must not make the pieces pile up. */
function writeOut(bytes: Buffer): Promise<void> {
  return new Promise((resolveWrite, reject) =>
    process.stdout.write(bytes, (error) => (error ? reject(error) : resolveWrite())),
  );
}

/** `labsweep status --server URL`. */
export async function remoteStatus(flags: ServerFlags & { json?: boolean }): Promise<number> {
  const server = requireServer(flags, "status --server");
  const { json } = await callApi(server, "GET", "/status");
  /** Older coordinators send only part of the report (no resultErrors before result_dir_errors). */
  const status = json as LiveCounts & { phases: LivePhase[] } & Partial<StatusReport>;
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(status)}\n`);
    return EXIT.ok;
  }
  // A coordinator from before `waiting` and `next up` sends none: count them as 0.
  const fill = <T extends LiveCounts>(counts: T): T => ({
    ...counts,
    waiting: counts.waiting ?? 0,
    nextUp: counts.nextUp ?? 0,
    orphaned: counts.orphaned ?? 0,
    cancelled: counts.cancelled ?? 0,
  });
  printStatus({ ...fill(status), phases: status.phases.map(fill) });
  return EXIT.ok;
}
