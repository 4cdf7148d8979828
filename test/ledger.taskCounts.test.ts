import { beforeEach, describe, expect, it } from "vitest";
import type { Db } from "../src/ledger/db.js";
import { evaluateGates } from "../src/ledger/evaluateGates.js";
import { finishAttempt } from "../src/ledger/finishAttempt.js";
import { recordAttemptProcess } from "../src/ledger/recoverAbandoned.js";
import { syncSweep } from "../src/ledger/syncSweep.js";
import {
  droppedTaskCount,
  meanTaskSeconds,
  phaseProgress,
  runningTasks,
  taskCounts,
  waitingCounts,
} from "../src/ledger/taskCounts.js";
import type { Lease } from "../src/protocol/interfaces.js";
import { loadSweep } from "../src/sweep/loadSweep.js";
import { claimOrThrow } from "./helpers/claims.js";
import { type LedgerBackend, useLedgerBackends } from "./helpers/postgres.js";

const NOW = 13_000_000;
const FILE = "/tmp/x/sweep.yaml";

// Every case runs on SQLite and on PostgreSQL (a server started for this file).
const backends = useLedgerBackends();
let backend: LedgerBackend;

// a: x 1..4; b (after a): x 4 (shared with a), 11, 12; c (after b): x 21.
const SWEEP = `
command: run {x}
retries: 0
a:
  combinations:
    - x: [1, 2, 3, 4]
b:
  after: [a]
  combinations:
    - x: [4, 11, 12]
c:
  after: [b]
  combinations:
    - x: [21]
`;

async function ledger(text = SWEEP): Promise<Db> {
  const { db } = await backend.open();
  await syncSweep(db, loadSweep([{ file: FILE, text }]), NOW);
  await evaluateGates(db, NOW);
  return db;
}

const claim = (db: Db): Promise<Lease> => claimOrThrow(db, { now: NOW, leaseMs: 1 });

const ok = (wallSeconds: number) => ({ kind: "succeeded", metrics: {}, wallSeconds }) as const;
const bad = { kind: "failed", exitCode: 1, signal: null, error: "x", wallSeconds: 1 } as const;

/** Counts per phase without the text columns. */
async function progress(db: Db) {
  // Priorities and pauses: ledger.pausePriority.test.ts.
  return (await phaseProgress(db)).map(({ configFile, reason, priority, paused, ...rest }) => rest);
}

describe.each(backends)("on $name", (each) => {
  beforeEach(() => {
    backend = each;
  });

  describe("taskCounts / phaseProgress", () => {
    it("counts pending tasks of waiting phases as blocked", async () => {
      const db = await ledger();
      expect(await taskCounts(db)).toEqual({
        unique: 7,
        succeeded: 0,
        failed: 0,
        running: 0,
        pending: 4, // a's tasks, x 4 included: it is in open phase a too
        blocked: 3, // 11, 12 (b waits) and 21 (c waits)
        cancelled: 0,
      });
      const phases = await phaseProgress(db);
      expect(phases.map((phase) => [phase.name, phase.state, phase.configFile])).toEqual([
        ["a", "open", FILE],
        ["b", "waiting", FILE],
        ["c", "waiting", FILE],
      ]);
      expect(phases[1]?.reason).toBe("waiting for a (0/4 settled)");
      expect(await progress(db)).toEqual([
        {
          name: "a",
          state: "open",
          unique: 4,
          succeeded: 0,
          failed: 0,
          running: 0,
          pending: 4,
          blocked: 0,
          cancelled: 0,
        },
        {
          name: "b",
          state: "waiting",
          unique: 3,
          succeeded: 0,
          failed: 0,
          running: 0,
          pending: 1,
          blocked: 2,
          cancelled: 0,
        },
        {
          name: "c",
          state: "waiting",
          unique: 1,
          succeeded: 0,
          failed: 0,
          running: 0,
          pending: 0,
          blocked: 1,
          cancelled: 0,
        },
      ]);
    });

    it("follows tasks through running, succeeded and failed, and gates that block", async () => {
      const db = await ledger();
      const one = await claim(db);
      const two = await claim(db);
      const three = await claim(db);
      expect(await taskCounts(db)).toMatchObject({ running: 3, pending: 1, blocked: 3 });
      await finishAttempt(db, one.attemptId, ok(10), NOW);
      await finishAttempt(db, two.attemptId, bad, NOW);
      expect(await taskCounts(db)).toEqual({
        unique: 7,
        succeeded: 1,
        failed: 1,
        running: 1,
        pending: 1,
        blocked: 3,
        cancelled: 0,
      });
      await finishAttempt(db, three.attemptId, ok(20), NOW);
      await finishAttempt(db, (await claim(db)).attemptId, ok(30), NOW);
      await evaluateGates(db, NOW);
      // a's gate failed (x 2): b and c are blocked; x 4 succeeded before that.
      expect(await taskCounts(db)).toEqual({
        unique: 7,
        succeeded: 3,
        failed: 1,
        running: 0,
        pending: 0,
        blocked: 3,
        cancelled: 0,
      });
      expect(await progress(db)).toEqual([
        {
          name: "a",
          state: "open",
          unique: 4,
          succeeded: 3,
          failed: 1,
          running: 0,
          pending: 0,
          blocked: 0,
          cancelled: 0,
        },
        {
          name: "b",
          state: "blocked",
          unique: 3,
          succeeded: 1,
          failed: 0,
          running: 0,
          pending: 0,
          blocked: 2,
          cancelled: 0,
        },
        {
          name: "c",
          state: "blocked",
          unique: 1,
          succeeded: 0,
          failed: 0,
          running: 0,
          pending: 0,
          blocked: 1,
          cancelled: 0,
        },
      ]);
      expect(await db.one("SELECT count(*) AS n FROM tasks WHERE state = 'blocked'")).toEqual({ n: 3 });
      expect(await meanTaskSeconds(db)).toBe(20);
    });

    it("counts a pending task held back by backoff as pending, not blocked", async () => {
      const db = await ledger(SWEEP.replace("retries: 0", "retries: 2\nbackoff: 1h"));
      await finishAttempt(db, (await claim(db)).attemptId, bad, NOW);
      expect(await taskCounts(db)).toMatchObject({ pending: 4, failed: 0, blocked: 3 });
    });

    it("leaves out tasks and phases no config lists any more", async () => {
      const db = await ledger();
      await finishAttempt(db, (await claim(db)).attemptId, ok(5), NOW);
      expect(await droppedTaskCount(db)).toBe(0);
      await syncSweep(
        db,
        loadSweep([
          { file: FILE, text: "command: run {x}\nretries: 0\na:\n  combinations:\n    - x: [2, 3]\n" },
        ]),
        NOW,
      );
      expect(await droppedTaskCount(db)).toBe(5);
      expect(await taskCounts(db)).toEqual({
        unique: 2,
        succeeded: 0,
        failed: 0,
        running: 0,
        pending: 2,
        blocked: 0,
        cancelled: 0,
      });
      expect((await phaseProgress(db)).map((phase) => [phase.name, phase.unique])).toEqual([["a", 2]]);
    });

    it("is all zeros for an empty ledger", async () => {
      const { db } = await backend.open();
      expect(await taskCounts(db)).toEqual({
        unique: 0,
        succeeded: 0,
        failed: 0,
        running: 0,
        pending: 0,
        blocked: 0,
        cancelled: 0,
      });
      expect(await phaseProgress(db)).toEqual([]);
      expect(await meanTaskSeconds(db)).toBeNull();
      expect(await runningTasks(db)).toEqual([]);
      expect(await waitingCounts(db)).toEqual({ total: 0, byPhase: new Map() });
    });

    it("lists running tasks with their worker, phases and whether a process was reported", async () => {
      const db = await ledger();
      const one = await claim(db);
      await claim(db);
      await claim(db);
      const four = await claim(db); // x 4: in a and b
      await recordAttemptProcess(db, one.attemptId, 123, "log");
      const running = await runningTasks(db);
      expect(running.map((task) => [task.worker, task.started])).toEqual([
        ["w", true],
        ["w", false],
        ["w", false],
        ["w", false],
      ]);
      expect(running.find((task) => task.taskId === four.task.id)?.phases.sort()).toEqual(["a", "b"]);
      // Pending tasks of waiting phases: 11, 12 (b), 21 (c); x 4 runs.
      expect(await waitingCounts(db)).toEqual({
        total: 3,
        byPhase: new Map([
          ["b", 2],
          ["c", 1],
        ]),
      });
    });
  });
});
