/**
 * Leasing ahead: with every slot busy running short tasks, the agent leases the next task
 * before a slot frees up, so the slot starts it without a round trip. Real ledger, real
 * coordinator, real processes; the agent talks to the coordinator in-process (localPort).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Agent, type AgentOptions } from "../src/agent/agent.js";
import { localPort } from "../src/app/localPort.js";
import { prepareLedger } from "../src/app/localRun.js";
import { Coordinator } from "../src/coordinator/coordinator.js";
import { openSweep } from "../src/coordinator/openSweep.js";
import type { Db } from "../src/ledger/db.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

interface Setup {
  dir: string;
  db: Db;
  agent: Agent;
  attempts(): Promise<
    Array<{ task_id: number; started_at: number; ended_at: number | null; outcome: string }>
  >;
}

async function setup(count: number, command: string, options: Partial<AgentOptions> = {}): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), "labsweep-ahead-"));
  const config = join(dir, "sweep.yaml");
  const values = Array.from({ length: count }, (_, i) => i + 1).join(", ");
  writeFileSync(
    config,
    `command: ${command}\nretries: 0\nmain:\n  output_dir: out\n  combinations:\n    - x: [${values}]\n`,
  );
  const stateDir = join(dir, ".labsweep");
  const prepared = await prepareLedger(stateDir, openSweep([config]));
  const coordinator = new Coordinator(prepared.db, { stateDir });
  const agent = new Agent(localPort(coordinator), {
    agentId: "local-test",
    host: "test",
    stateDir,
    slots: [{ index: 0, gpuIndices: [] }],
    gpuFreeMiB: new Map(),
    cpuCount: 1,
    ...options,
  });
  cleanups.push(async () => {
    await coordinator.drainResults();
    await prepared.db.close();
    prepared.release();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    dir,
    db: prepared.db,
    agent,
    attempts: () =>
      prepared.db.all("SELECT task_id, started_at, ended_at, outcome FROM attempts ORDER BY id"),
  };
}

/** Attempts leased while the one before them still ran. */
function leasedAhead(attempts: Array<{ started_at: number; ended_at: number | null }>): number {
  let ahead = 0;
  for (let i = 1; i < attempts.length; i++) {
    const previousEnd = attempts[i - 1]?.ended_at ?? Number.POSITIVE_INFINITY;
    if ((attempts[i]?.started_at ?? 0) < previousEnd) ahead++;
  }
  return ahead;
}

const FOUR_SLOTS: Partial<AgentOptions> = {
  slots: [0, 1, 2, 3].map((index) => ({ index, gpuIndices: [] })),
  cpuCount: 4,
};

/** Runs the agent to the end of the sweep; the most lanes it held at once (sampled every 5 ms). */
async function mostLanes(agent: Agent): Promise<number> {
  let most = 0;
  const watch = setInterval(() => {
    most = Math.max(most, agent.ahead.laneCount);
  }, 5);
  try {
    expect(await agent.run()).toEqual({ kind: "done" });
  } finally {
    clearInterval(watch);
  }
  return most;
}

describe("leasing ahead", () => {
  it("leases the next short task while the only slot is busy; every task still runs once", async () => {
    const { agent, attempts, db } = await setup(12, "sleep 0.05");
    expect(await agent.run()).toEqual({ kind: "done" });
    const all = await attempts();
    expect(all.map((attempt) => attempt.task_id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect(all.every((attempt) => attempt.outcome === "succeeded")).toBe(true);
    // The first two tasks teach the agent that tasks are short; most after that were leased ahead.
    expect(leasedAhead(all)).toBeGreaterThanOrEqual(6);
    expect(await db.one("SELECT count(*) AS n FROM tasks WHERE state = 'succeeded'")).toEqual({ n: 12 });
  });

  it("holds tasks behind every running task, not one: each slot starts its next without the loop", async () => {
    const { agent, attempts } = await setup(40, "sleep 0.05", FOUR_SLOTS);
    // A lane behind each of the 4 running tasks at once (one behind the oldest only was 1): 50 ms
    // tasks, so 100 ms of the 4 slots' work is 8 tasks, one or two behind each.
    expect(await mostLanes(agent)).toBe(4);
    const all = await attempts();
    expect(all).toHaveLength(40);
    expect(all.every((attempt) => attempt.outcome === "succeeded")).toBe(true);
  });

  it("holds about 100 ms of the slots' work in all: longer tasks get fewer lanes, so other agents wait less", async () => {
    const { agent } = await setup(16, "sleep 0.4", FOUR_SLOTS);
    // 100 ms of 4 slots' work is one 400 ms task: one lane, one task held.
    expect(await mostLanes(agent)).toBe(1);
  });

  it("never leases ahead when it is turned off, or when tasks are long", async () => {
    const off = await setup(6, "sleep 0.01", { leaseAheadBelowMs: 0 });
    expect(await off.agent.run()).toEqual({ kind: "done" });
    expect(leasedAhead(await off.attempts())).toBe(0);
    const long = await setup(4, "sleep 0.2", { leaseAheadBelowMs: 100 });
    expect(await long.agent.run()).toEqual({ kind: "done" });
    expect(leasedAhead(await long.attempts())).toBe(0);
  });

  it("hands a task held ahead back when stopped: pending again, no retry spent", async () => {
    // Each task leaves a mark when it runs: one handed back must never have run.
    const { agent, attempts, db, dir } = await setup(
      6,
      "'mkdir -p ran && touch ran/$LABSWEEP_TASK_ID && sleep 0.3'",
    );
    const running = agent.run();
    // Two tasks finish (the agent learns they are short), then one is held ahead of the third.
    for (let i = 0; i < 200 && leasedAhead(await attempts()) === 0; i++)
      await new Promise((resolve) => setTimeout(resolve, 20));
    expect(leasedAhead(await attempts())).toBeGreaterThan(0);
    agent.stopLeasing();
    expect(await running).toEqual({ kind: "stopped" });
    const all = await attempts();
    // Every task held ahead (up to three, chained in the launcher) went back without running.
    const interrupted = all.filter((attempt) => attempt.outcome === "interrupted");
    expect(interrupted.length).toBeGreaterThanOrEqual(1);
    for (const attempt of interrupted) {
      const task = await db.one<{ state: string; attempts: number }>(
        "SELECT state, attempts FROM tasks WHERE id = $1",
        [attempt.task_id],
      );
      expect(task).toEqual({ state: "pending", attempts: 0 });
      expect(existsSync(join(dir, "ran", String(attempt.task_id)))).toBe(false);
    }
    expect(all.filter((attempt) => attempt.ended_at === null)).toEqual([]);
  });
});
