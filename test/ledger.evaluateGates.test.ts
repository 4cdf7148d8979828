import { beforeEach, describe, expect, it } from "vitest";
import { claimTask } from "../src/ledger/claimTask.js";
import type { Db } from "../src/ledger/db.js";
import { evaluateGates } from "../src/ledger/evaluateGates.js";
import { finishAttempt } from "../src/ledger/finishAttempt.js";
import { retryFailed } from "../src/ledger/retryFailed.js";
import { syncSweep } from "../src/ledger/syncSweep.js";
import { loadSweep } from "../src/sweep/loadSweep.js";
import { type LedgerBackend, useLedgerBackends } from "./helpers/postgres.js";

const NOW = 9_000_000;

// Every case runs on SQLite and on PostgreSQL (a server started for this file).
const backends = useLedgerBackends();
let backend: LedgerBackend;

async function ledgerWith(text: string): Promise<Db> {
  const { db } = await backend.open();
  await syncSweep(db, loadSweep([{ file: "/tmp/x/sweep.yaml", text }]), NOW);
  return db;
}

/**
 * Claims every claimable task and ends it: the ones whose `x` is listed in `failing` fail (for
 * good: configs here use retries: 0), the rest succeed. Returns the x values run.
 */
async function runClaimable(db: Db, failing: number[] = []): Promise<number[]> {
  const ran: number[] = [];
  for (;;) {
    const claim = await claimTask(db, {
      worker: "w",
      host: "h",
      now: NOW,
      leaseMs: 60_000,
      fits: () => ({ gpuIds: [] }),
    });
    if (!claim) return ran;
    const x = claim.task.params.x as number;
    ran.push(x);
    await finishAttempt(
      db,
      claim.attemptId,
      failing.includes(x)
        ? { kind: "failed", exitCode: 1, signal: null, error: "exit 1", wallSeconds: 1 }
        : { kind: "succeeded", metrics: {}, wallSeconds: 1 },
      NOW,
    );
  }
}

async function phases(db: Db): Promise<Record<string, [string, string | null]>> {
  const rows = await db.all<{ name: string; state: string; reason: string | null }>(
    "SELECT name, state, reason FROM phases ORDER BY position",
  );
  return Object.fromEntries(rows.map((row) => [row.name, [row.state, row.reason]]));
}

/** Tasks by x: "state/runnable". */
async function tasks(db: Db): Promise<Record<number, string>> {
  const rows = await db.all<{ params_json: string; state: string; runnable: number }>(
    "SELECT params_json, state, runnable FROM tasks ORDER BY id",
  );
  return Object.fromEntries(
    rows.map((row) => [(JSON.parse(row.params_json) as { x: number }).x, `${row.state}/${row.runnable}`]),
  );
}

const CHAIN = `
command: run {x}
retries: 0
a:
  combinations:
    - x: [1, 2]
b:
  after: [a]
  combinations:
    - x: [11, 12]
c:
  after: [b]
  combinations:
    - x: [21]
`;

describe.each(backends)("on $name", (each) => {
  beforeEach(() => {
    backend = each;
  });

  describe("evaluateGates: opening", () => {
    it("keeps a phase waiting until its `after` phase settles, then opens it when all succeeded", async () => {
      const db = await ledgerWith(CHAIN);
      expect(await evaluateGates(db, NOW)).toBe(true);
      expect(await phases(db)).toEqual({
        a: ["open", null],
        b: ["waiting", "waiting for a (0/2 settled)"],
        c: ["waiting", "waiting for b (0/2 settled)"],
      });
      expect(await evaluateGates(db, NOW)).toBe(false); // nothing new to say

      // One of a's tasks done: still waiting, with progress in the reason.
      const claim = await claimTask(db, {
        worker: "w",
        host: "h",
        now: NOW,
        leaseMs: 1,
        fits: () => ({ gpuIds: [] }),
      });
      await finishAttempt(
        db,
        claim?.attemptId as number,
        { kind: "succeeded", metrics: {}, wallSeconds: 1 },
        NOW,
      );
      expect(await evaluateGates(db, NOW)).toBe(true);
      expect((await phases(db)).b).toEqual(["waiting", "waiting for a (1/2 settled)"]);
      expect(await tasks(db)).toMatchObject({ 11: "pending/0", 12: "pending/0" });

      expect(await runClaimable(db)).toEqual([2]);
      expect(await evaluateGates(db, NOW)).toBe(true);
      expect(await phases(db)).toMatchObject({
        b: ["open", null],
        c: ["waiting", "waiting for b (0/2 settled)"],
      });
      expect(await tasks(db)).toMatchObject({ 11: "pending/1", 12: "pending/1", 21: "pending/0" });
      expect(await db.one("SELECT count(*) AS n FROM events WHERE kind = 'phase_open'")).toEqual({ n: 1 });

      expect(await runClaimable(db)).toEqual([11, 12]);
      expect(await evaluateGates(db, NOW)).toBe(true);
      expect(await phases(db)).toMatchObject({ c: ["open", null] });
      expect(await runClaimable(db)).toEqual([21]);
      // Nothing waits any more: the cheap path.
      expect(await evaluateGates(db, NOW)).toBe(false);
    });

    it("waits for every phase listed in `after`", async () => {
      const db = await ledgerWith(`
command: run {x}
retries: 0
a:
  combinations:
    - x: [1]
b:
  combinations:
    - x: [2]
c:
  after: [a, b]
  combinations:
    - x: [3]
`);
      const claim = await claimTask(db, {
        worker: "w",
        host: "h",
        now: NOW,
        leaseMs: 1,
        fits: () => ({ gpuIds: [] }),
      });
      await finishAttempt(
        db,
        claim?.attemptId as number,
        { kind: "succeeded", metrics: {}, wallSeconds: 1 },
        NOW,
      );
      await evaluateGates(db, NOW);
      expect((await phases(db)).c).toEqual(["waiting", "waiting for b (0/1 settled)"]);
      await runClaimable(db);
      await evaluateGates(db, NOW);
      expect((await phases(db)).c).toEqual(["open", null]);
    });

    it("opens a chain of phases whose `after` points forward in one call", async () => {
      const db = await ledgerWith(`
command: run {x}
retries: 0
c:
  after: [b]
  combinations:
    - x: [21]
b:
  after: [a]
  combinations:
    - x: [11]
a:
  combinations:
    - x: [1]
`);
      await runClaimable(db);
      await evaluateGates(db, NOW);
      expect(await phases(db)).toEqual({
        c: ["waiting", "waiting for b (0/1 settled)"],
        b: ["open", null],
        a: ["open", null],
      });
    });
  });

  describe("evaluateGates: gates that fail", () => {
    it("blocks a phase whose all_succeeded gate failed, and its tasks, with the reason", async () => {
      const db = await ledgerWith(CHAIN);
      expect(await runClaimable(db, [2])).toEqual([1, 2]);
      expect(await evaluateGates(db, NOW)).toBe(true);
      expect(await phases(db)).toEqual({
        a: ["open", null],
        b: ["blocked", "gate all_succeeded failed: 1 of 2 tasks of a did not succeed"],
        // Blocked propagates to dependents, naming the phase that blocks them.
        c: ["blocked", "phase b is blocked"],
      });
      expect(await tasks(db)).toEqual({
        1: "succeeded/1",
        2: "failed/1",
        11: "blocked/0",
        12: "blocked/0",
        21: "blocked/0",
      });
      expect(await db.one("SELECT count(*) AS n FROM events WHERE kind = 'phase_blocked'")).toEqual({ n: 2 });
      expect(await evaluateGates(db, NOW)).toBe(false);
    });

    it("min_success passes at or above the ratio and fails below it", async () => {
      const text = (ratio: number) => `
command: run {x}
retries: 0
a:
  combinations:
    - x: [1, 2, 3, 4]
b:
  after: [a]
  gate: {min_success: ${ratio}}
  combinations:
    - x: [11]
`;
      const passing = await ledgerWith(text(0.5));
      await runClaimable(passing, [3, 4]);
      await evaluateGates(passing, NOW);
      expect((await phases(passing)).b).toEqual(["open", null]);
      expect((await tasks(passing))[11]).toBe("pending/1");

      const failing = await ledgerWith(text(0.75));
      await runClaimable(failing, [3, 4]);
      await evaluateGates(failing, NOW);
      expect((await phases(failing)).b).toEqual([
        "blocked",
        "gate min_success 0.75 failed: a succeeded 2/4 (50.0%)",
      ]);
      expect((await tasks(failing))[11]).toBe("blocked/0");
    });

    it("min_success still waits for every task of the `after` phase to settle", async () => {
      const db = await ledgerWith(`
command: run {x}
retries: 0
a:
  combinations:
    - x: [1, 2, 3, 4]
b:
  after: [a]
  gate: {min_success: 0.25}
  combinations:
    - x: [11]
`);
      const claim = await claimTask(db, {
        worker: "w",
        host: "h",
        now: NOW,
        leaseMs: 1,
        fits: () => ({ gpuIds: [] }),
      });
      await finishAttempt(
        db,
        claim?.attemptId as number,
        { kind: "succeeded", metrics: {}, wallSeconds: 1 },
        NOW,
      );
      await evaluateGates(db, NOW);
      expect((await phases(db)).b).toEqual(["waiting", "waiting for a (1/4 settled)"]);
    });

    it("keeps a task pending and runnable while another of its phases is open", async () => {
      const db = await ledgerWith(`
command: run {x}
retries: 0
a:
  combinations:
    - x: [1]
b:
  after: [a]
  combinations:
    - x: [11, 12]
other:
  combinations:
    - x: [12]
`);
      expect(await runClaimable(db, [1])).toEqual([1, 12]);
      await evaluateGates(db, NOW);
      expect((await phases(db)).b?.[0]).toBe("blocked");
      expect(await tasks(db)).toEqual({ 1: "failed/1", 11: "blocked/0", 12: "succeeded/1" });
    });
  });

  describe("evaluateGates after retryFailed", () => {
    it("puts blocked phases back to waiting and their blocked tasks back to pending; then opens them", async () => {
      const db = await ledgerWith(CHAIN);
      await runClaimable(db, [2]);
      await evaluateGates(db, NOW);
      expect(await retryFailed(db, NOW + 1)).toBe(1);
      // The "gate failed" reasons are stale now: cleared until the phases are judged again.
      expect(await phases(db)).toMatchObject({
        b: ["waiting", null],
        c: ["waiting", null],
      });
      expect((await tasks(db))[2]).toBe("pending/1");

      expect(await evaluateGates(db, NOW + 1)).toBe(true);
      expect(await phases(db)).toEqual({
        a: ["open", null],
        b: ["waiting", "waiting for a (1/2 settled)"],
        c: ["waiting", "waiting for b (0/2 settled)"],
      });
      expect(await tasks(db)).toEqual({
        1: "succeeded/1",
        2: "pending/1",
        11: "pending/0",
        12: "pending/0",
        21: "pending/0",
      });
      expect(await db.one("SELECT attempts, not_before FROM tasks WHERE id = 2")).toEqual({
        attempts: 0,
        not_before: 0,
      });

      // This time it works: the chain opens.
      expect(await runClaimable(db)).toEqual([2]);
      await evaluateGates(db, NOW + 2);
      expect(await runClaimable(db)).toEqual([11, 12]);
      await evaluateGates(db, NOW + 3);
      expect(await runClaimable(db)).toEqual([21]);
      expect(Object.values(await phases(db))).toEqual([
        ["open", null],
        ["open", null],
        ["open", null],
      ]);
    });

    it("reports fresh reasons when a dependent is declared before the phase it waits on", async () => {
      const db = await ledgerWith(`
command: run {x}
retries: 0
a:
  combinations:
    - x: [1]
c:
  after: [b]
  combinations:
    - x: [21]
b:
  after: [a]
  combinations:
    - x: [11, 12]
`);
      await runClaimable(db, [1]);
      await evaluateGates(db, NOW);
      expect(await phases(db)).toMatchObject({
        b: ["blocked", expect.anything()],
        c: ["blocked", "phase b is blocked"],
      });
      await retryFailed(db, NOW + 1);
      await evaluateGates(db, NOW + 1);
      // b's tasks are pending again, so none of them has settled.
      expect(await phases(db)).toEqual({
        a: ["open", null],
        c: ["waiting", "waiting for b (0/2 settled)"],
        b: ["waiting", "waiting for a (0/1 settled)"],
      });
      expect(await tasks(db)).toEqual({ 1: "pending/1", 21: "pending/0", 11: "pending/0", 12: "pending/0" });
    });

    it("retryFailed with a phase retries only that phase's failed tasks", async () => {
      const db = await ledgerWith(`
command: run {x}
retries: 0
a:
  combinations:
    - x: [1]
other:
  combinations:
    - x: [2]
`);
      await runClaimable(db, [1, 2]);
      expect(await retryFailed(db, NOW, { phase: "other" })).toBe(1);
      expect(await tasks(db)).toEqual({ 1: "failed/1", 2: "pending/1" });
      expect(await retryFailed(db, NOW)).toBe(1);
      expect(await tasks(db)).toEqual({ 1: "pending/1", 2: "pending/1" });
    });
  });
});
