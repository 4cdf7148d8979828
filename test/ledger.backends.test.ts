import { readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { listAgents, markAgentLost, registerAgent } from "../src/ledger/agents.js";
import { cancelTasks } from "../src/ledger/cancelTasks.js";
import { type ClaimRequest, claimTask, nextBackoffExpiry } from "../src/ledger/claimTask.js";
import type { Db } from "../src/ledger/db.js";
import { LEDGER_LOCKS, tryLockLedger } from "../src/ledger/dialect.js";
import { evaluateGates } from "../src/ledger/evaluateGates.js";
import { finishAttempt } from "../src/ledger/finishAttempt.js";
import { UnknownPhaseError } from "../src/ledger/knownPhase.js";
import { migrate } from "../src/ledger/migrate.js";
import { extendLeases, openAttempts, renewLeases, requeueAttempts } from "../src/ledger/recoverAbandoned.js";
import {
  importCompletedTasks,
  markRowsWritten,
  owedResultRows,
  owedRowCount,
  oweRowsToNewPlacements,
  writtenRowTasks,
} from "../src/ledger/resultRows.js";
import { retryFailed } from "../src/ledger/retryFailed.js";
import { syncSweep } from "../src/ledger/syncSweep.js";
import {
  droppedTaskCount,
  meanTaskSeconds,
  phaseProgress,
  taskCounts,
  usageTotals,
} from "../src/ledger/taskCounts.js";
import type { AttemptOutcome, Lease } from "../src/protocol/interfaces.js";
import { loadSweep } from "../src/sweep/loadSweep.js";
import { useLedgerBackends } from "./helpers/postgres.js";

/**
 * The ledger's behaviour, once per backend: every case runs against SQLite and against a real
 * PostgreSQL server started for this file. Per-operation edge cases live in the other
 * ledger.*.test.ts files (SQLite); what a dialect could change is pinned here for both.
 */
const NOW = 7_000_000_000_000; // epoch ms past 2^32: BIGINT columns, numbers back

const backends = useLedgerBackends();

const sweep = (text: string) => loadSweep([{ file: "/tmp/x/sweep.yaml", text }]);

// Every task is in phase a (dir out/a); x 2 and 3 are also in phase b (dir out/b): 3 unique tasks.
const SHARED = `
command: run {x}
retries: 1
backoff: 2s
a:
  output_dir: out/a
  combinations:
    - x: [1, 2, 3]
b:
  output_dir: out/b
  combinations:
    - x: [2, 3]
`;

const CHAIN = `
command: run {x}
retries: 0
a:
  combinations:
    - x: [1, 2]
b:
  after: [a]
  gate: { min_success: 0.9 }
  combinations:
    - x: [10, 11]
`;

const request = (overrides: Partial<ClaimRequest> = {}): ClaimRequest => ({
  worker: "w1",
  host: "host-a",
  now: NOW,
  leaseMs: 30_000,
  fits: () => ({ gpuIds: [] }),
  ...overrides,
});

const success = (metrics: Record<string, unknown> = { loss: 0.5 }): AttemptOutcome => ({
  kind: "succeeded",
  metrics,
  wallSeconds: 2.5,
  usage: { peak_rss_mb: 100.5, gpu_util_mean: 50, gpu_mem_peak_mb: 1000, energy_wh: 0.25, samples: 3 },
});
const failure: AttemptOutcome = {
  kind: "failed",
  exitCode: 1,
  signal: null,
  error: "exit 1",
  wallSeconds: 1,
};

async function claim(db: Db, overrides: Partial<ClaimRequest> = {}): Promise<Lease> {
  const claimed = await claimTask(db, request(overrides));
  if (!claimed) throw new Error("nothing to claim");
  return claimed;
}

async function claimAll(db: Db, overrides: Partial<ClaimRequest> = {}): Promise<Lease[]> {
  const claims: Lease[] = [];
  for (let claimed = await claimTask(db, request(overrides)); claimed; ) {
    claims.push(claimed);
    if (claims.length > 1000) throw new Error("claimTask keeps handing out tasks");
    claimed = await claimTask(db, request(overrides));
  }
  return claims;
}

async function states(db: Db): Promise<Record<number, string>> {
  const rows = await db.all<{ id: number; state: string }>("SELECT id, state FROM tasks ORDER BY id");
  return Object.fromEntries(rows.map((row) => [row.id, row.state]));
}

describe.each(backends)("the Db port on $name", (backend) => {
  it("commits a transaction that resolves and rolls back one that throws; nested calls share it", async () => {
    const { db } = await backend.open();
    await db.transaction(async (tx) => {
      await tx.run("INSERT INTO events (at, kind) VALUES ($1, 'a')", [NOW]);
      await tx.transaction(async (inner) =>
        inner.run("INSERT INTO events (at, kind) VALUES ($1, 'b')", [NOW]),
      );
    });
    await expect(
      db.transaction(async (tx) => {
        await tx.run("INSERT INTO events (at, kind) VALUES ($1, 'c')", [NOW]);
        throw new Error("no");
      }),
    ).rejects.toThrow("no");
    const kinds = await db.all<{ kind: string; at: number; id: number }>(
      "SELECT id, kind, at FROM events ORDER BY id",
    );
    expect(kinds.map((row) => [row.kind, row.at, typeof row.id])).toEqual([
      ["a", NOW, "number"],
      ["b", NOW, "number"],
    ]);
    expect(await db.run("UPDATE events SET detail = $1 WHERE kind IN ('a', 'b')", ["x"])).toEqual({
      changes: 2,
    });
    expect(await db.one("SELECT id FROM events WHERE kind = $1", ["zzz"])).toBeUndefined();
    // Numbers: BIGINT, count(*) and sums come back as JS numbers; booleans bind as 0/1.
    expect(
      await db.one("SELECT count(*) AS n, sum(at) AS total, avg(at) AS mean FROM events WHERE $1 = 1", [
        true,
      ]),
    ).toEqual({ n: 2, total: 2 * NOW, mean: NOW });
  });
});

describe("advisory duty locks on postgres", () => {
  const postgres = backends[1] as (typeof backends)[1];
  it("grants a duty to one transaction at a time; SQLite's write lock makes it always free", async () => {
    const { db } = await postgres.open();
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let granted: (locked: boolean) => void = () => {};
    const firstLocked = new Promise<boolean>((resolve) => {
      granted = resolve;
    });
    const first = db.transaction(async (tx) => {
      granted(await tryLockLedger(tx, LEDGER_LOCKS.results));
      await held;
    });
    expect(await firstLocked).toBe(true);
    expect(await db.transaction((tx) => tryLockLedger(tx, LEDGER_LOCKS.results))).toBe(false);
    expect(await db.transaction((tx) => tryLockLedger(tx, LEDGER_LOCKS.leases))).toBe(true);
    release();
    await first;
    expect(await db.transaction((tx) => tryLockLedger(tx, LEDGER_LOCKS.results))).toBe(true);
    const sqlite = await (backends[0] as (typeof backends)[0]).open();
    expect(await sqlite.db.transaction((tx) => tryLockLedger(tx, LEDGER_LOCKS.results))).toBe(true);
  });
});

describe.each(backends)("ledger on $name", (backend) => {
  it("migrates once: a second migrate applies nothing and versions are numbers", async () => {
    const { db } = await backend.open();
    expect(await migrate(db)).toEqual([]);
    const versions = await db.all<{ version: number }>(
      "SELECT version FROM labsweep_migrations ORDER BY version",
    );
    expect(versions.map((row) => row.version)).toEqual(migrationVersions(backend.name));
  });

  it("syncs a sweep: merges duplicates, keeps state on re-sync, marks dropped tasks inactive", async () => {
    const { db } = await backend.open();
    const first = await syncSweep(db, sweep(SHARED), NOW);
    expect(first).toMatchObject({ unique: 3, merged: 2, added: 3, dropped: 0 });
    expect(first.phases).toEqual([
      { name: "a", tasks: 3, merged: 0 },
      { name: "b", tasks: 2, merged: 2 },
    ]);
    const ids = await db.all<{ id: number; params_json: string }>(
      "SELECT id, params_json FROM tasks ORDER BY id",
    );
    expect(ids).toEqual([
      { id: 1, params_json: '{"x":1}' },
      { id: 2, params_json: '{"x":2}' },
      { id: 3, params_json: '{"x":3}' },
    ]);
    const claimed = await claim(db);
    await finishAttempt(db, claimed.attemptId, success(), NOW + 1);
    const again = await syncSweep(db, sweep(SHARED), NOW + 2);
    expect(again).toMatchObject({ unique: 3, merged: 2, added: 0, dropped: 0 });
    expect((await states(db))[1]).toBe("succeeded");
    const smaller = await syncSweep(db, sweep(SHARED.replace("[1, 2, 3]", "[1, 2]")), NOW + 3);
    expect(smaller).toMatchObject({ unique: 3, added: 0 });
    // x 3 is still in phase b.
    const dropped = await syncSweep(
      db,
      sweep(SHARED.replace("[1, 2, 3]", "[1]").replace("[2, 3]", "[2]")),
      NOW + 4,
    );
    expect(dropped).toMatchObject({ unique: 2, dropped: 1 });
    expect(await droppedTaskCount(db)).toBe(1);
    expect(await taskCounts(db)).toMatchObject({ unique: 2, succeeded: 1, pending: 1 });
  });

  it("syncs a large grid in batches (over PostgreSQL's 65,535 parameters per statement)", async () => {
    const { db } = await backend.open();
    const big = `
command: run {x} {y}
g:
  combinations:
    - x: [${Array.from({ length: 150 }, (_, i) => i).join(", ")}]
    - y: [${Array.from({ length: 150 }, (_, i) => i).join(", ")}]
`;
    expect(await syncSweep(db, sweep(big), NOW)).toMatchObject({ unique: 22_500, added: 22_500 });
    expect(await syncSweep(db, sweep(big), NOW)).toMatchObject({ unique: 22_500, added: 0 });
    expect((await taskCounts(db)).pending).toBe(22_500);
  });

  it("claims the lowest id first, with its details, placements and a numbered attempt", async () => {
    const { db } = await backend.open();
    await syncSweep(db, sweep(SHARED), NOW);
    const first = await claim(db, { fits: () => ({ gpuIds: [1, 3] }) });
    expect(first).toMatchObject({
      attemptNumber: 1,
      gpuIds: [1, 3],
      placements: [{ phase: "a", outputDir: "/tmp/x/out/a" }],
      task: { id: 1, params: { x: 1 }, command: "run 1", cwd: "/tmp/x", state: "running", attempts: 0 },
    });
    expect(typeof first.attemptId).toBe("number");
    const attempt = await db.one("SELECT * FROM attempts WHERE id = $1", [first.attemptId]);
    expect(attempt).toMatchObject({
      task_id: 1,
      number: 1,
      worker: "w1",
      host: "host-a",
      gpu_ids: "1,3",
      started_at: NOW,
      lease_expires: NOW + 30_000,
      ended_at: null,
    });
    const second = await claim(db);
    expect(second.task.id).toBe(2);
    expect(second.placements).toEqual([
      { phase: "a", outputDir: "/tmp/x/out/a" },
      { phase: "b", outputDir: "/tmp/x/out/b" },
    ]);
    // A worker that fits nothing gets nothing; the task stays for others.
    expect(await claimTask(db, request({ fits: () => null }))).toBeNull();
    expect((await claim(db)).task.id).toBe(3);
    expect(await claimTask(db, request())).toBeNull();
    expect(await taskCounts(db)).toMatchObject({ unique: 3, running: 3, pending: 0 });
  });

  it("fences finishes: stale reports are ignored, a late success is kept, repeats change nothing", async () => {
    const { db } = await backend.open();
    await syncSweep(db, sweep(SHARED), NOW);
    // Task 1: its lost attempt's failure is stale; the task keeps running under the new attempt.
    const lost = await claim(db);
    expect(await requeueAttempts(db, [await attemptRow(db, lost.attemptId)], "worker gone", NOW)).toEqual({
      requeued: 1,
      failed: [],
    });
    const current = await claim(db);
    expect(current).toMatchObject({ task: { id: lost.task.id }, attemptNumber: 2 });
    expect(await finishAttempt(db, lost.attemptId, failure, NOW + 1)).toMatchObject({ taskState: "ignored" });
    expect((await states(db))[1]).toBe("running");
    // Task 2: its lost attempt's success while the task has no result is kept (the work is done).
    const lostTwo = await claim(db);
    await requeueAttempts(db, [await attemptRow(db, lostTwo.attemptId)], "worker gone", NOW);
    const currentTwo = await claim(db);
    expect(currentTwo.task.id).toBe(lostTwo.task.id);
    expect(await finishAttempt(db, lostTwo.attemptId, success({ loss: 1 }), NOW + 2)).toMatchObject({
      taskState: "succeeded",
    });
    expect(await finishAttempt(db, currentTwo.attemptId, success({ loss: 2 }), NOW + 3)).toMatchObject({
      taskState: "ignored",
    });
    expect(await finishAttempt(db, currentTwo.attemptId, success({ loss: 2 }), NOW + 4)).toMatchObject({
      taskState: "ignored",
    });
    const task = await db.one<{ result_json: string; wall_seconds: number; finished_at: number }>(
      "SELECT result_json, wall_seconds, finished_at FROM tasks WHERE id = $1",
      [lostTwo.task.id],
    );
    expect(task).toEqual({ result_json: '{"loss":1}', wall_seconds: 2.5, finished_at: NOW + 2 });
    expect(await owedRowCount(db)).toBe(2);
    await expect(finishAttempt(db, 999_999, failure, NOW)).rejects.toThrow(/unknown attempt/);
  });

  it("retries failures with backoff, then fails for good; retryFailed gives fresh retries", async () => {
    const { db } = await backend.open();
    await syncSweep(db, sweep(SHARED.replace("[1, 2, 3]", "[1]").replace("[2, 3]", "[1]")), NOW);
    const first = await claim(db);
    expect(await finishAttempt(db, first.attemptId, failure, NOW)).toEqual({
      taskState: "pending",
      finalFailure: false,
      retryAt: NOW + 2000,
    });
    expect(await claimTask(db, request({ now: NOW + 1999 }))).toBeNull();
    expect(await nextBackoffExpiry(db, NOW)).toBe(NOW + 2000);
    const second = await claim(db, { now: NOW + 2000 });
    expect(second.attemptNumber).toBe(2);
    expect(await finishAttempt(db, second.attemptId, failure, NOW + 2001)).toMatchObject({
      taskState: "failed",
      finalFailure: true,
    });
    expect(await nextBackoffExpiry(db, NOW)).toBeNull();
    expect(await taskCounts(db)).toMatchObject({ failed: 1, pending: 0 });
    // A phase the sweep lacks is named, not "0 retried"; nothing changes.
    await expect(retryFailed(db, NOW + 3000, { phase: "nope" })).rejects.toThrow(UnknownPhaseError);
    expect(await taskCounts(db)).toMatchObject({ failed: 1, pending: 0 });
    expect(await retryFailed(db, NOW + 3000, { phase: "a" })).toBe(1);
    expect(await taskCounts(db)).toMatchObject({ failed: 0, pending: 1 });
    const third = await claim(db, { now: NOW + 3000 });
    expect(third.attemptNumber).toBe(3);
    expect(third.task.attempts).toBe(0);
  });

  it("owes one result row per output dir, first phase first; marks them written; imports CSV rows", async () => {
    const { db } = await backend.open();
    await syncSweep(db, sweep(SHARED), NOW);
    await claim(db); // x 1, left running
    const two = await claim(db);
    await finishAttempt(db, two.attemptId, success({ acc: 0.9 }), NOW + 1);
    const owed = await owedResultRows(db);
    expect(owed).toEqual([
      {
        taskId: 2,
        outputDir: "/tmp/x/out/a",
        phase: "a",
        params: { x: 2 },
        metrics: { acc: 0.9 },
        wallSeconds: 2.5,
        attempts: 1,
        host: "host-a",
        gpuIds: "",
        usage: { peak_rss_mb: 100.5, gpu_util_mean: 50, gpu_mem_peak_mb: 1000, energy_wh: 0.25, samples: 3 },
      },
      expect.objectContaining({ taskId: 2, outputDir: "/tmp/x/out/b", phase: "b" }),
    ]);
    expect(await owedRowCount(db)).toBe(2);
    await markRowsWritten(db, [{ taskId: 2, outputDir: "/tmp/x/out/a" }]);
    expect(await owedRowCount(db)).toBe(1);
    expect([...(await writtenRowTasks(db, "/tmp/x/out/a"))]).toEqual([2]);
    // x 1 and x 3 are found in out/a's CSV: complete, written there; x 3 is owed to out/b.
    const found = await importCompletedTasks(
      db,
      [
        { taskId: 1, outputDir: "/tmp/x/out/a", metrics: { acc: 0.1 } },
        { taskId: 3, outputDir: "/tmp/x/out/a", metrics: { acc: 0.3 } },
        { taskId: 3, outputDir: "/tmp/x/out/a", metrics: { acc: 0.3 } },
      ],
      NOW + 2,
    );
    expect(found).toBe(2);
    expect(await states(db)).toEqual({ 1: "succeeded", 2: "succeeded", 3: "succeeded" });
    expect(await openAttempts(db)).toEqual([]);
    expect((await owedResultRows(db)).map((row) => [row.taskId, row.outputDir, row.phase])).toEqual([
      [2, "/tmp/x/out/b", "b"],
      [3, "/tmp/x/out/b", "b"],
    ]);
    // A second import in the same session (PostgreSQL: a temp table per transaction) works too.
    expect(await importCompletedTasks(db, [{ taskId: 3, outputDir: "/tmp/x/out/b", metrics: {} }], NOW)).toBe(
      0,
    );
    expect(await owedRowCount(db)).toBe(1);
  });

  it("owes rows to a placement added after the task succeeded", async () => {
    const { db } = await backend.open();
    const one = SHARED.replace("[1, 2, 3]", "[1]").replace("[2, 3]", "[5]");
    await syncSweep(db, sweep(one), NOW);
    const done = await claim(db);
    await finishAttempt(db, done.attemptId, success(), NOW);
    await markRowsWritten(db, [{ taskId: done.task.id, outputDir: "/tmp/x/out/a" }]);
    await syncSweep(db, sweep(one.replace("[5]", "[1, 5]")), NOW);
    await oweRowsToNewPlacements(db);
    await oweRowsToNewPlacements(db);
    expect((await owedResultRows(db)).map((row) => [row.taskId, row.outputDir, row.phase])).toEqual([
      [done.task.id, "/tmp/x/out/b", "b"],
    ]);
  });

  it("opens a gated phase when its dependency passes, blocks it when the gate fails", async () => {
    const { db } = await backend.open();
    await syncSweep(db, sweep(CHAIN), NOW);
    expect(await evaluateGates(db, NOW)).toBe(true);
    expect(await phaseProgress(db)).toMatchObject([
      { name: "a", state: "open", unique: 2, pending: 2, blocked: 0 },
      {
        name: "b",
        state: "waiting",
        unique: 2,
        pending: 0,
        blocked: 2,
        reason: "waiting for a (0/2 settled)",
      },
    ]);
    const [one, two] = await claimAll(db);
    expect([one?.task.params.x, two?.task.params.x]).toEqual([1, 2]);
    await finishAttempt(db, one?.attemptId as number, success(), NOW);
    await finishAttempt(db, two?.attemptId as number, failure, NOW);
    expect(await evaluateGates(db, NOW)).toBe(true);
    expect(await evaluateGates(db, NOW)).toBe(false);
    const [, b] = await phaseProgress(db);
    expect(b).toMatchObject({ state: "blocked", blocked: 2 });
    expect(b?.reason).toMatch(/gate min_success 0.9 failed: a succeeded 1\/2/);
    expect(await taskCounts(db)).toMatchObject({ unique: 4, succeeded: 1, failed: 1, blocked: 2 });
    // Retrying the failure puts b back to waiting; once a passes, b opens and its tasks run.
    await retryFailed(db, NOW);
    await evaluateGates(db, NOW);
    const [retried] = await claimAll(db);
    await finishAttempt(db, retried?.attemptId as number, success(), NOW);
    await evaluateGates(db, NOW);
    expect((await phaseProgress(db)).map((phase) => phase.state)).toEqual(["open", "open"]);
    expect((await claimAll(db)).map((claimed) => claimed.task.params.x)).toEqual([10, 11]);
  });

  it("cancels tasks and a phase: running attempts are returned, their reports ignored", async () => {
    const { db } = await backend.open();
    await syncSweep(db, sweep(SHARED), NOW);
    const running = await claim(db);
    const cancelled = await cancelTasks(db, { taskIds: [running.task.id] }, NOW);
    expect(cancelled).toEqual({ tasks: 1, running: [{ worker: "w1", attemptId: running.attemptId }] });
    expect(await finishAttempt(db, running.attemptId, success(), NOW)).toMatchObject({
      taskState: "ignored",
    });
    expect(await cancelTasks(db, { phase: "b" }, NOW)).toEqual({ tasks: 2, running: [] });
    expect(await taskCounts(db)).toMatchObject({ cancelled: 3, pending: 0 });
    expect(await claimTask(db, request())).toBeNull();
  });

  it("recovers abandoned attempts: requeues without spending a retry, renews and extends leases", async () => {
    const { db } = await backend.open();
    await syncSweep(db, sweep(SHARED), NOW);
    const a = await claim(db, { worker: "local-1" });
    const b = await claim(db, { worker: "agent-2" });
    expect((await openAttempts(db, { worker: "agent-2" })).map((row) => row.id)).toEqual([b.attemptId]);
    expect(await openAttempts(db, { expiredBy: NOW + 30_000 })).toEqual([]);
    expect((await openAttempts(db, { expiredBy: NOW + 30_001 })).length).toBe(2);
    expect(await renewLeases(db, [a.attemptId, b.attemptId], NOW + 60_000)).toEqual([]);
    await extendLeases(db, [b.attemptId], NOW + 90_000);
    expect((await openAttempts(db, { expiredBy: NOW + 60_001 })).map((row) => row.id)).toEqual([a.attemptId]);
    expect(await requeueAttempts(db, await openAttempts(db, { worker: "local-1" }), "gone", NOW)).toEqual({
      requeued: 1,
      failed: [],
    });
    expect(await renewLeases(db, [a.attemptId, b.attemptId], NOW + 70_000)).toEqual([a.attemptId]);
    const again = await claim(db);
    expect(again.task).toMatchObject({ id: a.task.id, attempts: 0 });
    const lostEvents = await db.all<{ task_id: number; detail: string }>(
      "SELECT task_id, detail FROM events WHERE kind = 'task_lost'",
    );
    expect(lostEvents).toEqual([{ task_id: a.task.id, detail: expect.stringContaining('"why":"gone"') }]);
  });

  it("counts tasks, usage and mean time; records agents", async () => {
    const { db } = await backend.open();
    await syncSweep(db, sweep(SHARED), NOW);
    const one = await claim(db);
    await finishAttempt(db, one.attemptId, success(), NOW);
    const two = await claim(db);
    await finishAttempt(db, two.attemptId, success(), NOW);
    expect(await taskCounts(db)).toEqual({
      unique: 3,
      succeeded: 2,
      failed: 0,
      running: 0,
      pending: 1,
      blocked: 0,
      cancelled: 0,
    });
    expect(await meanTaskSeconds(db)).toBe(2.5);
    expect(await usageTotals(db)).toEqual({ energy_wh: 0.5, peak_rss_mb_max: 100.5 });
    await registerAgent(db, { id: "ag1", name: "box", host: "box", info: { slots: 2 } }, NOW);
    await registerAgent(db, { id: "ag1", name: "box2", host: "box", info: { slots: 4 } }, NOW + 1);
    await markAgentLost(db, "ag1", "lease expired", NOW + 2);
    expect(await listAgents(db)).toEqual([
      expect.objectContaining({
        id: "ag1",
        name: "box2",
        info_json: '{"slots":4}',
        registered_at: NOW + 1,
        state: "lost",
        lost_at: NOW + 2,
        lost_reason: "lease expired",
        running: 0,
      }),
    ]);
  });

  it("never hands one task to two concurrent claimers, even from two separate connections", async () => {
    const { db, store, stateDir } = await backend.open();
    // better-sqlite3 is synchronous: a second connection in this process would wait for the
    // first's write lock while blocking the event loop the first needs to finish. SQLite's
    // cross-process case is its write lock; here its claimers share one connection.
    await syncSweep(
      db,
      sweep(SHARED.replace("[1, 2, 3]", `[${Array.from({ length: 40 }, (_, i) => i)}]`)),
      NOW,
    );
    const other = backend.name === "postgres" ? await backend.reopen(store, stateDir) : db;
    const claimers = [db, other, db, other, db, other];
    const claims = (
      await Promise.all(
        claimers.map((ledger, index) => claimAll(ledger, { worker: `w${index}`, host: `h${index}` })),
      )
    ).flat();
    const ids = claims.map((claimed) => claimed.task.id).sort((x, y) => x - y);
    expect(ids).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(await taskCounts(db)).toMatchObject({ running: 40, pending: 0 });
    const attempts = await db.one<{ n: number }>("SELECT count(*) AS n FROM attempts");
    expect(attempts?.n).toBe(40);
    // Each attempt reported twice at once (an agent's resend racing its original): applied once.
    const reports = await Promise.all(
      claims.flatMap((claimed, index) => {
        const outcome = index % 2 === 0 ? success() : failure;
        return [db, other].map((ledger) => finishAttempt(ledger, claimed.attemptId, outcome, NOW + 1));
      }),
    );
    const applied = reports.filter((report) => report.taskState !== "ignored");
    expect(applied).toHaveLength(40);
    expect(await taskCounts(db)).toMatchObject({ succeeded: 20, pending: 20, running: 0 });
    const retries = await db.one<{ n: number }>("SELECT count(*) AS n FROM events WHERE kind = 'task_retry'");
    expect(retries?.n).toBe(20);
    const owing = await db.one<{ n: number }>("SELECT count(DISTINCT task_id) AS n FROM result_rows");
    expect(owing?.n).toBe(20);
  });
});

/** Every migration's version, from the dialect's numbered files. */
function migrationVersions(dialect: string): number[] {
  return readdirSync(new URL(`../migrations/${dialect}/`, import.meta.url))
    .filter((name) => /^\d{6}\.sql$/.test(name))
    .map((name) => Number(name.slice(0, 6)))
    .sort((a, b) => a - b);
}

async function attemptRow(db: Db, id: number) {
  const [row] = (await openAttempts(db)).filter((attempt) => attempt.id === id);
  if (!row) throw new Error(`attempt ${id} is not open`);
  return row;
}
