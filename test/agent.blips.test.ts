/**
 * The dispatch loop survives its background work failing — a heartbeat, a pid notice or a wait
 * for work that meets an unreachable ledger — by telling it and going on: before, each was a
 * promise nobody handled, and an unhandled rejection ends the process (and vitest fails the run
 * on one). Real ledger, coordinator and processes; the port in between fails its background
 * calls as a ledger in the middle of a restart would.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Agent } from "../src/agent/agent.js";
import type { CoordinatorPort } from "../src/agent/coordinatorPort.js";
import { localPort } from "../src/app/localPort.js";
import { prepareLedger } from "../src/app/localRun.js";
import { Coordinator } from "../src/coordinator/coordinator.js";
import { openSweep } from "../src/coordinator/openSweep.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

describe("the agent's background work", () => {
  it("a failing heartbeat, pid notice or wait for work is told, and the tasks run on to the end", async () => {
    const dir = mkdtempSync(join(tmpdir(), "labsweep-blips-"));
    const config = join(dir, "sweep.yaml");
    writeFileSync(config, "command: sleep 0.4\nretries: 0\nmain:\n  combinations:\n    - x: [1, 2, 3]\n");
    const stateDir = join(dir, ".labsweep");
    const prepared = await prepareLedger(stateDir, openSweep([config]));
    const coordinator = new Coordinator(prepared.db, { stateDir });
    cleanups.push(async () => {
      await coordinator.drainResults();
      await prepared.db.close();
      prepared.release();
      rmSync(dir, { recursive: true, force: true });
    });
    const unreachable = () => Promise.reject(new Error("connection terminated (the ledger is restarting)"));
    const real = localPort(coordinator);
    let waits = 0;
    const port: CoordinatorPort = {
      ...real,
      heartbeat: unreachable,
      started: unreachable,
      // Every other wait fails: the loop must still wake up and carry on.
      awaitWork: (ms) => (++waits % 2 === 0 ? unreachable() : real.awaitWork(ms)),
    };
    const warnings: string[] = [];
    const agent = new Agent(port, {
      agentId: "local-test",
      host: "test",
      stateDir,
      slots: [{ index: 0, gpuIndices: [] }],
      gpuFreeMiB: new Map(),
      cpuCount: 1,
      heartbeatMs: 50,
      leaseAheadBelowMs: 0,
      warn: (line) => warnings.push(line),
    });
    expect(await agent.run()).toEqual({ kind: "done" });
    const states = await prepared.db.all<{ state: string }>("SELECT state FROM tasks ORDER BY id");
    expect(states.map((row) => row.state)).toEqual(["succeeded", "succeeded", "succeeded"]);
    const told = warnings.join("\n");
    expect(told).toMatch(/could not renew leases \(tried again next beat\): connection terminated/);
    expect(told).toMatch(/could not record the process of task \d: connection terminated/);
  });
});
