/**
 * A coordinator for tests of the HTTP API: a sweep written to a temp dir, its ledger prepared the
 * way `labsweep serve` prepares it, and `startServer` on 127.0.0.1 with a free port. Agents are
 * played by hand: these helpers build their registration and capacity bodies.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { prepareLedger } from "../../src/app/localRun.js";
import { type RunningServer, type ServeOptions, startServer } from "../../src/app/serve.js";
import { openSweep } from "../../src/coordinator/openSweep.js";
import type { Db } from "../../src/ledger/db.js";
import type { Capacity } from "../../src/protocol/capacity.js";
import type { AgentCapabilities } from "../../src/protocol/http.js";

export const AGENT_TOKEN = "agent-token-for-tests-0123456789";
export const VIEWER_TOKEN = "viewer-token-for-tests-0123456789";
export const ADMIN_TOKEN = "admin-token-for-tests-0123456789";

export interface Fixture {
  dir: string;
  stateDir: string;
  configPath: string;
  db: Db;
  server: RunningServer;
  warnings: string[];
  /** Stops the server, closes the ledger, removes the temp dir. Safe to call twice. */
  close(): Promise<void>;
}

/** A plain sweep of `count` CPU tasks (`x` = 1…count) with no retries. */
export function simpleSweep(count: number, extra = ""): string {
  const values = Array.from({ length: count }, (_, index) => index + 1).join(", ");
  return `command: echo {x}\nretries: 0\n${extra}main:\n  output_dir: out\n  combinations:\n    - x: [${values}]\n`;
}

export async function startFixture(yaml: string, options: Partial<ServeOptions> = {}): Promise<Fixture> {
  const dir = mkdtempSync(join(tmpdir(), "labsweep-http-"));
  const configPath = join(dir, "sweep.yaml");
  writeFileSync(configPath, yaml);
  const stateDir = join(dir, ".labsweep");
  const sweep = openSweep([configPath]);
  const prepared = await prepareLedger(stateDir, sweep);
  const warnings: string[] = [];
  let server: RunningServer;
  try {
    server = await startServer(prepared.db, {
      stateDir,
      host: "127.0.0.1",
      port: 0,
      tokens: { agent: AGENT_TOKEN, viewer: VIEWER_TOKEN, admin: ADMIN_TOKEN },
      warn: (message) => warnings.push(message),
      sweep: { files: sweep.files, load: {} },
      // Every route's schema is checked against the meta-schema here, as servers skip it.
      checkSchemas: true,
      ...options,
    });
  } catch (error) {
    await prepared.db.close();
    prepared.release();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  let closed = false;
  return {
    dir,
    stateDir,
    configPath,
    db: prepared.db,
    server,
    warnings,
    async close() {
      if (closed) return;
      closed = true;
      await server.close();
      await prepared.db.close();
      prepared.release();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A registration body; GPUs as [totalMiB, freeMiB] pairs. */
export function agentInfo(
  agentId: string,
  options: { slots?: number; gpus?: Array<[number, number]>; tags?: string[] } = {},
): AgentCapabilities {
  const gpus = (options.gpus ?? []).map(([total, free], index) => ({
    index,
    uuid: `GPU-${agentId}-${index}`,
    name: "Test GPU",
    memoryTotalMiB: total,
    memoryFreeMiB: free,
  }));
  return {
    agentId,
    name: agentId,
    host: "test-host",
    pid: 4242,
    slots: options.slots ?? 2,
    cpus: 4,
    ramMb: 8192,
    gpus,
    driverVersion: null,
    cudaVersion: null,
    tags: options.tags ?? [],
    probes: {},
  };
}

/** What an idle agent offers: free slots, no CPU limit (null in JSON), GPUs with free MiB. */
export function capacityOf(
  options: { slots?: number; gpusFreeMiB?: number[]; tags?: string[] } = {},
): Omit<Capacity, "freeCpus"> & { freeCpus: null } {
  const gpus = options.gpusFreeMiB ?? [];
  return {
    freeSlots: options.slots ?? 2,
    freeCpus: null,
    hasGpus: gpus.length > 0,
    gpus: gpus.map((free, index) => ({ index, freeShare: 1, freeMemoryMiB: free })),
    tags: options.tags ?? [],
  };
}

export const agentAuth = { authorization: `Bearer ${AGENT_TOKEN}` };
export const viewerAuth = { authorization: `Bearer ${VIEWER_TOKEN}` };
export const adminAuth = { authorization: `Bearer ${ADMIN_TOKEN}` };

/** The token a route needs: the admin's for changing the sweep, the agent's for the rest. */
export function authFor(path: string): Record<string, string> {
  return /^\/(cancel|retry|configs)\b/.test(path) ? adminAuth : agentAuth;
}

/** Rows of `<dir>/out/final_results.csv` (header excluded); [] when there is no file. */
export function csvRows(dir: string, outputDir = "out"): string[] {
  try {
    const lines = readFileSync(join(dir, outputDir, "final_results.csv"), "utf8")
      .split("\n")
      .filter(Boolean);
    return lines.slice(1);
  } catch {
    return [];
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls until `condition` holds or `timeoutMs` passes; returns whether it held. */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return true;
    if (Date.now() > deadline) return false;
    await sleep(25);
  }
}
