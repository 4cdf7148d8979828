import { beforeEach, describe, expect, it } from "vitest";
import type { ClaimRequest } from "../src/ledger/claimTask.js";
import { claimTask } from "../src/ledger/claimTask.js";
import { claimTasks } from "../src/ledger/claimTasks.js";
import type { Db } from "../src/ledger/db.js";
import { stopPhase } from "../src/ledger/evaluateGates.js";
import { UnknownPhaseError } from "../src/ledger/knownPhase.js";
import { pausePhases } from "../src/ledger/pausePhases.js";
import { requeueAttempts } from "../src/ledger/recoverAbandoned.js";
import type { AttemptRow } from "../src/ledger/rows.js";
import { syncSweep } from "../src/ledger/syncSweep.js";
import { phaseProgress } from "../src/ledger/taskCounts.js";
import { loadSweep } from "../src/sweep/loadSweep.js";
import { type LedgerBackend, useLedgerBackends } from "./helpers/postgres.js";

const NOW = 5_000_000;

// Every case runs on SQLite and on PostgreSQL (a server started for this file).
const backends = useLedgerBackends();
let backend: LedgerBackend;

/** Phases low (x 1–3, declared first: task ids 1–3), mid (x 11–13: 4–6), high (x 21–23: 7–9). */
function sweepText(priorities: { low?: number; mid?: number; high?: number } = {}): string {
  const phase = (name: keyof typeof priorities, first: number) =>
    `${name}:\n${priorities[name] === undefined ? "" : `  priority: ${priorities[name]}\n`}  combinations:\n    - x: [${first}, ${first + 1}, ${first + 2}]\n`;
  return `command: echo {x}\n${phase("low", 1)}${phase("mid", 11)}${phase("high", 21)}`;
}

async function ledgerWith(text: string): Promise<Db> {
  const { db } = await backend.open();
  await syncSweep(db, loadSweep([{ file: "/tmp/x/sweep.yaml", text }]), NOW);
  return db;
}

const request: ClaimRequest = {
  worker: "w",
  host: "h",
  now: NOW,
  leaseMs: 60_000,
  fits: () => ({ gpuIds: [] }),
};

/** The x of each task claimed, `max` at a time, until nothing is left. */
async function claimOrder(db: Db, max: number): Promise<number[]> {
  const order: number[] = [];
  for (;;) {
    const leases =
      max === 1
        ? [await claimTask(db, request)].filter((lease) => lease !== null)
        : await claimTasks(db, request, max);
    if (leases.length === 0) return order;
    for (const lease of leases) order.push(Number(lease.task.params.x));
  }
}

describe.each(backends)("pause and priority on $name", (each) => {
  beforeEach(() => {
    backend = each;
  });

  it("without priorities or pauses, tasks go by id across phases", async () => {
    const db = await ledgerWith(sweepText());
    expect(await claimOrder(db, 4)).toEqual([1, 2, 3, 11, 12, 13, 21, 22, 23]);
  });

  it("a higher priority phase leases first, one at a time and in batches", async () => {
    for (const max of [1, 4]) {
      const db = await ledgerWith(sweepText({ high: 5, low: -1 }));
      expect(await claimOrder(db, max)).toEqual([21, 22, 23, 11, 12, 13, 1, 2, 3]);
    }
  });

  it("phases of one priority go by task id together, after higher ones", async () => {
    const db = await ledgerWith(sweepText({ low: 2, high: 2 }));
    expect(await claimOrder(db, 2)).toEqual([1, 2, 3, 21, 22, 23, 11, 12, 13]);
  });

  it("a paused phase starts nothing until resumed; the others go on in their order", async () => {
    const db = await ledgerWith(sweepText());
    expect(await pausePhases(db, true, NOW, { phase: "low" })).toEqual(["low"]);
    expect(await pausePhases(db, true, NOW, { phase: "low" })).toEqual([]);
    expect(await claimOrder(db, 4)).toEqual([11, 12, 13, 21, 22, 23]);
    expect(await pausePhases(db, false, NOW, { phase: "low" })).toEqual(["low"]);
    expect(await claimOrder(db, 4)).toEqual([1, 2, 3]);
  });

  it("pausing every phase stops all claims; resuming every phase brings them back", async () => {
    const db = await ledgerWith(sweepText({ mid: 1 }));
    expect((await pausePhases(db, true, NOW)).sort()).toEqual(["high", "low", "mid"]);
    expect(await claimTasks(db, request, 4)).toEqual([]);
    expect(await claimTask(db, request)).toBeNull();
    await pausePhases(db, false, NOW);
    expect(await claimOrder(db, 4)).toEqual([11, 12, 13, 1, 2, 3, 21, 22, 23]);
  });

  it("a pause outlives a sync of the configs, which updates priorities", async () => {
    const db = await ledgerWith(sweepText());
    await pausePhases(db, true, NOW, { phase: "mid" });
    await syncSweep(db, loadSweep([{ file: "/tmp/x/sweep.yaml", text: sweepText({ low: 3 }) }]), NOW);
    const phases = await phaseProgress(db);
    expect(phases.map(({ name, priority, paused }) => [name, Number(priority), Number(paused)])).toEqual([
      ["low", 3, 0],
      ["mid", 0, 1],
      ["high", 0, 0],
    ]);
    expect(await claimOrder(db, 4)).toEqual([1, 2, 3, 21, 22, 23]);
  });

  it("pausing an unknown phase names the phases there are", async () => {
    const db = await ledgerWith(sweepText());
    await expect(pausePhases(db, true, NOW, { phase: "hgih" })).rejects.toThrow(UnknownPhaseError);
    await expect(pausePhases(db, true, NOW, { phase: "hgih" })).rejects.toThrow(
      /unknown phase hgih \(phases: low, mid, high\)/,
    );
  });
});

describe.each(backends)("fail fast's stop on $name", (each) => {
  beforeEach(() => {
    backend = each;
  });

  it("holds a task requeued into a stopped phase (a lost agent's) with the rest of the phase", async () => {
    const db = await ledgerWith(sweepText());
    const running = await claimTask(db, request);
    if (!running) throw new Error("nothing claimed");
    expect(await stopPhase(db, "low", "stopped (max_failures 1): test", NOW)).toBe(true);
    expect(await stopPhase(db, "low", "again", NOW)).toBe(false);
    const held = async () =>
      (await db.all<{ state: string }>("SELECT state FROM tasks WHERE phase = 'low' ORDER BY id")).map(
        (row) => row.state,
      );
    expect(await held()).toEqual(["running", "blocked", "blocked"]);
    const attempt = (await db.one<AttemptRow>("SELECT * FROM attempts WHERE id = $1", [
      running.attemptId,
    ])) as AttemptRow;
    expect((await requeueAttempts(db, [attempt], "lease expired", NOW)).requeued).toBe(1);
    expect(await held()).toEqual(["blocked", "blocked", "blocked"]);
    // Nothing of it is leased; the other phases are.
    expect((await claimOrder(db, 4)).every((x) => x > 10)).toBe(true);
  });
});
