import { beforeEach, describe, expect, it } from "vitest";
import type { Db } from "../src/ledger/db.js";
import { finishAttempt } from "../src/ledger/finishAttempt.js";
import { activeOutputDirs } from "../src/ledger/reads/resultSources.js";
import {
  importCompletedTasks,
  markRowsWritten,
  owedResultRows,
  writtenRowTasks,
} from "../src/ledger/resultRows.js";
import { syncSweep } from "../src/ledger/syncSweep.js";
import type { Lease } from "../src/protocol/interfaces.js";
import { loadSweep } from "../src/sweep/loadSweep.js";
import { claimOrThrow } from "./helpers/claims.js";
import { type LedgerBackend, useLedgerBackends } from "./helpers/postgres.js";

const NOW = 11_000_000;
const A = "/tmp/x/out/a";
const B = "/tmp/x/out/b";

// Every case runs on SQLite and on PostgreSQL (a server started for this file).
const backends = useLedgerBackends();
let backend: LedgerBackend;

// Every task is in phase a (dir out/a); x 2 and 3 are also in phase b (dir out/b).
const SWEEP = `
command: run {x}
retries: 2
backoff: 1s
a:
  output_dir: out/a
  combinations:
    - x: [1, 2, 3]
b:
  output_dir: out/b
  combinations:
    - x: [2, 3]
`;

async function ledger(): Promise<Db> {
  const { db } = await backend.open();
  await syncSweep(db, loadSweep([{ file: "/tmp/x/sweep.yaml", text: SWEEP }]), NOW);
  return db;
}

const USAGE = {
  peak_rss_mb: 812.5,
  gpu_util_mean: 61.2,
  gpu_mem_peak_mb: 9000,
  energy_wh: 1.25,
  samples: 30,
};

const claim = (db: Db, now = NOW): Promise<Lease> =>
  claimOrThrow(db, { host: "host-a", now, fits: () => ({ gpuIds: [0, 1] }) });

async function rows(db: Db) {
  return db.all<{ task_id: number; output_dir: string; phase: string; written: number }>(
    "SELECT task_id, output_dir, phase, written FROM result_rows ORDER BY task_id, output_dir",
  );
}

async function snapshot(db: Db) {
  return {
    tasks: await db.all("SELECT * FROM tasks ORDER BY id"),
    rows: await rows(db),
    attempts: await db.all("SELECT * FROM attempts ORDER BY id"),
  };
}

describe.each(backends)("on $name", (each) => {
  beforeEach(() => {
    backend = each;
  });

  describe("owedResultRows / markRowsWritten", () => {
    it("lists rows owed after successes, by output dir then task, with what the CSV needs", async () => {
      const db = await ledger();
      expect(await owedResultRows(db)).toEqual([]);
      // Task 1 fails once, then succeeds; task 2 succeeds.
      const first = await claim(db);
      await finishAttempt(
        db,
        first.attemptId,
        { kind: "failed", exitCode: 1, signal: null, error: "x", wallSeconds: 1 },
        NOW,
      );
      const second = await claim(db);
      expect(second.task.id).toBe(2);
      await finishAttempt(
        db,
        second.attemptId,
        { kind: "succeeded", metrics: { acc: 0.2 }, wallSeconds: 3, usage: USAGE },
        NOW,
      );
      const retry = await claim(db, NOW + 1_000);
      expect(retry.task.id).toBe(1);
      await finishAttempt(
        db,
        retry.attemptId,
        { kind: "succeeded", metrics: { acc: 0.1 }, wallSeconds: 2 },
        NOW + 2_000,
      );

      const owed = await owedResultRows(db);
      expect(owed.map((row) => [row.outputDir, row.taskId, row.phase])).toEqual([
        [A, 1, "a"],
        [A, 2, "a"],
        [B, 2, "b"],
      ]);
      expect(owed[0]).toEqual({
        taskId: 1,
        outputDir: A,
        phase: "a",
        params: { x: 1 },
        metrics: { acc: 0.1 },
        wallSeconds: 2,
        attempts: 2,
        host: "host-a",
        gpuIds: "0,1",
        usage: null,
      });
      expect(owed[1]).toMatchObject({ taskId: 2, metrics: { acc: 0.2 }, attempts: 1, usage: USAGE });
      expect(await owedResultRows(db, { limit: 2 })).toEqual(owed.slice(0, 2));
    });

    it("markRowsWritten takes exactly the given rows off the list", async () => {
      const db = await ledger();
      for (let i = 0; i < 3; i++) {
        await finishAttempt(
          db,
          (await claim(db)).attemptId,
          { kind: "succeeded", metrics: {}, wallSeconds: 1 },
          NOW,
        );
      }
      expect(await owedResultRows(db)).toHaveLength(5);
      await markRowsWritten(db, [
        { taskId: 2, outputDir: A },
        { taskId: 3, outputDir: B },
      ]);
      expect((await owedResultRows(db)).map((row) => [row.outputDir, row.taskId])).toEqual([
        [A, 1],
        [A, 3],
        [B, 2],
      ]);
      expect(await writtenRowTasks(db, A)).toEqual(new Set([2]));
      expect(await writtenRowTasks(db, B)).toEqual(new Set([3]));
      await markRowsWritten(db, []);
      await markRowsWritten(
        db,
        (await owedResultRows(db)).map(({ taskId, outputDir }) => ({ taskId, outputDir })),
      );
      expect(await owedResultRows(db)).toEqual([]);
      expect(await writtenRowTasks(db, A)).toEqual(new Set([1, 2, 3]));
    });
  });

  describe("importCompletedTasks", () => {
    it("marks tasks found in a CSV succeeded, that dir written, and owes rows to their other dirs", async () => {
      const db = await ledger();
      const completed = await importCompletedTasks(
        db,
        [
          { taskId: 1, outputDir: A, metrics: { acc: "0.5" } },
          { taskId: 2, outputDir: A, metrics: { acc: "0.6" } },
        ],
        NOW + 10,
      );
      expect(completed).toBe(2);
      expect(
        await db.all("SELECT id, state, result_json, origin, finished_at, attempt_id FROM tasks ORDER BY id"),
      ).toEqual([
        {
          id: 1,
          state: "succeeded",
          result_json: '{"acc":"0.5"}',
          origin: "csv",
          finished_at: NOW + 10,
          attempt_id: null,
        },
        {
          id: 2,
          state: "succeeded",
          result_json: '{"acc":"0.6"}',
          origin: "csv",
          finished_at: NOW + 10,
          attempt_id: null,
        },
        { id: 3, state: "pending", result_json: null, origin: null, finished_at: null, attempt_id: null },
      ]);
      expect(await rows(db)).toEqual([
        { task_id: 1, output_dir: A, phase: "a", written: 1 },
        { task_id: 2, output_dir: A, phase: "a", written: 1 },
        { task_id: 2, output_dir: B, phase: "b", written: 0 },
      ]);
      expect((await owedResultRows(db)).map((row) => [row.outputDir, row.taskId, row.metrics])).toEqual([
        [B, 2, { acc: "0.6" }],
      ]);
      // Completed tasks are not handed out again.
      expect((await claim(db)).task.id).toBe(3);
    });

    it("importing the same rows twice changes nothing", async () => {
      const db = await ledger();
      const found = [
        { taskId: 2, outputDir: B, metrics: { acc: 1 } },
        { taskId: 3, outputDir: B, metrics: { acc: 2 } },
      ];
      expect(await importCompletedTasks(db, found, NOW)).toBe(2);
      const before = await snapshot(db);
      expect(await importCompletedTasks(db, found, NOW + 50)).toBe(0);
      expect(await snapshot(db)).toEqual(before);
      expect(await importCompletedTasks(db, [], NOW + 60)).toBe(0);
    });

    it("keeps the ledger's own result for a task that already succeeded, and marks the row written", async () => {
      const db = await ledger();
      const claimed = await claim(db);
      await finishAttempt(
        db,
        claimed.attemptId,
        { kind: "succeeded", metrics: { acc: 0.9 }, wallSeconds: 4 },
        NOW,
      );
      expect(
        await importCompletedTasks(db, [{ taskId: 1, outputDir: A, metrics: { acc: "other" } }], NOW + 1),
      ).toBe(0);
      expect(await db.one("SELECT result_json, origin, finished_at FROM tasks WHERE id = 1")).toEqual({
        result_json: '{"acc":0.9}',
        origin: "run",
        finished_at: NOW,
      });
      expect(await owedResultRows(db)).toEqual([]);
      expect(await rows(db)).toEqual([{ task_id: 1, output_dir: A, phase: "a", written: 1 }]);
    });

    it("supersedes a running attempt: the task is done and the attempt's late report is ignored", async () => {
      const db = await ledger();
      const claimed = await claim(db);
      expect(
        await importCompletedTasks(db, [{ taskId: 1, outputDir: A, metrics: { acc: 3 } }], NOW + 5),
      ).toBe(1);
      expect(
        await db.one("SELECT ended_at, outcome FROM attempts WHERE id = $1", [claimed.attemptId]),
      ).toEqual({
        ended_at: NOW + 5,
        outcome: "superseded",
      });
      const late = await finishAttempt(
        db,
        claimed.attemptId,
        { kind: "succeeded", metrics: { acc: 4 }, wallSeconds: 1 },
        NOW + 6,
      );
      expect(late.taskState).toBe("ignored");
      expect(await db.one("SELECT state, result_json FROM tasks WHERE id = 1")).toEqual({
        state: "succeeded",
        result_json: '{"acc":3}',
      });
    });

    it("a task found in two dirs at once has both rows marked written", async () => {
      const db = await ledger();
      expect(
        await importCompletedTasks(
          db,
          [
            { taskId: 2, outputDir: A, metrics: { acc: 1 } },
            { taskId: 2, outputDir: B, metrics: { acc: 1 } },
          ],
          NOW,
        ),
      ).toBe(1);
      expect(await rows(db)).toEqual([
        { task_id: 2, output_dir: A, phase: "a", written: 1 },
        { task_id: 2, output_dir: B, phase: "b", written: 1 },
      ]);
      expect(await owedResultRows(db)).toEqual([]);
    });

    it("imports in batches larger than one statement holds", async () => {
      const { db } = await backend.open();
      const xs = Array.from({ length: 700 }, (_, index) => index);
      await syncSweep(
        db,
        loadSweep([
          {
            file: "/tmp/x/sweep.yaml",
            text: `command: run {x}\na:\n  combinations:\n    - x: [${xs.join(", ")}]\n`,
          },
        ]),
        NOW,
      );
      const found = xs.map((x) => ({ taskId: x + 1, outputDir: "/tmp/x/results/a", metrics: { x } }));
      expect(await importCompletedTasks(db, found, NOW)).toBe(700);
      expect(await db.one("SELECT count(*) AS n FROM result_rows WHERE written = 1")).toEqual({ n: 700 });
      expect(await db.one("SELECT result_json FROM tasks WHERE id = 700")).toEqual({
        result_json: '{"x":699}',
      });
    });

    it("writes a dir two phases share under the first-declared one, and a dir no phase names", async () => {
      const { db } = await backend.open();
      // zeta is declared first but sorts last by name; middle writes its own dir.
      const text = `command: run {x}
output_dir: out/shared
zeta:
  combinations:
    - x: [1, 2]
alpha:
  combinations:
    - x: [1, 2]
middle:
  output_dir: out/own
  combinations:
    - x: [1]
`;
      await syncSweep(db, loadSweep([{ file: "/tmp/x/sweep.yaml", text }]), NOW);
      const found = [
        { taskId: 1, outputDir: "/tmp/x/out/shared", metrics: { acc: 1 } },
        { taskId: 2, outputDir: "/tmp/x/out/gone", metrics: { acc: 2 } },
      ];
      expect(await importCompletedTasks(db, found, NOW)).toBe(2);
      expect(await rows(db)).toEqual([
        { task_id: 1, output_dir: "/tmp/x/out/own", phase: "middle", written: 0 },
        { task_id: 1, output_dir: "/tmp/x/out/shared", phase: "zeta", written: 1 },
        { task_id: 2, output_dir: "/tmp/x/out/gone", phase: "", written: 1 },
        { task_id: 2, output_dir: "/tmp/x/out/shared", phase: "zeta", written: 0 },
      ]);
    });

    it("keeps the tasks' indexes as the migrations made them, importing most tasks or failing to", async () => {
      const db = await ledger();
      const before = await taskIndexes(db);
      expect(before.length).toBeGreaterThanOrEqual(4);
      // Task 9 does not exist: its row cannot be recorded, and the whole import rolls back.
      const failing = [1, 2, 3, 9].map((taskId) => ({ taskId, outputDir: A, metrics: { acc: taskId } }));
      const untouched = await snapshot(db);
      await expect(importCompletedTasks(db, failing, NOW)).rejects.toThrow();
      expect(await snapshot(db)).toEqual(untouched);
      expect(await taskIndexes(db)).toEqual(before);
      const found = [1, 2, 3].map((taskId) => ({ taskId, outputDir: A, metrics: { acc: taskId } }));
      expect(await importCompletedTasks(db, found, NOW)).toBe(3);
      expect(await taskIndexes(db)).toEqual(before);
      expect(await db.all("SELECT id FROM tasks WHERE state = 'succeeded' ORDER BY id")).toEqual([
        { id: 1 },
        { id: 2 },
        { id: 3 },
      ]);
    });
  });

  describe("activeOutputDirs", () => {
    it("lists each dir an active placement writes to, once and sorted, not a dir a re-sync dropped", async () => {
      const db = await ledger();
      expect(await activeOutputDirs(db)).toEqual([A, B]);
      const onlyB = "command: run {x}\nb:\n  output_dir: out/b\n  combinations:\n    - x: [2, 3]\n";
      await syncSweep(db, loadSweep([{ file: "/tmp/x/sweep.yaml", text: onlyB }]), NOW + 1);
      expect(await activeOutputDirs(db)).toEqual([B]);
      await syncSweep(db, loadSweep([{ file: "/tmp/x/sweep.yaml", text: SWEEP }]), NOW + 2);
      expect(await activeOutputDirs(db)).toEqual([A, B]);
    });
  });
});

/** Each index on tasks with its definition, as the database itself describes it. */
async function taskIndexes(db: Db): Promise<unknown[]> {
  if (db.dialect === "sqlite")
    return db.all(
      "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tasks' ORDER BY name",
    );
  return db.all("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'tasks' ORDER BY indexname");
}
