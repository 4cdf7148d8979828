import { beforeEach, describe, expect, it } from "vitest";
import { claimTask } from "../src/ledger/claimTask.js";
import type { Db } from "../src/ledger/db.js";
import { evaluateGates } from "../src/ledger/evaluateGates.js";
import { finishAttempt } from "../src/ledger/finishAttempt.js";
import { syncSweep } from "../src/ledger/syncSweep.js";
import { loadSweep, type Sweep } from "../src/sweep/loadSweep.js";
import { type LedgerBackend, useLedgerBackends } from "./helpers/postgres.js";

const FILE = "/tmp/x/sweep.yaml";
const NOW = 1_000_000;

// Every case runs on SQLite and on PostgreSQL (a server started for this file).
const backends = useLedgerBackends();
let backend: LedgerBackend;

async function freshLedger(): Promise<Db> {
  return (await backend.open()).db;
}

const sweepOf = (text: string): Sweep => loadSweep([{ file: FILE, text }]);

interface Row {
  id: number;
  key: string;
  phase: string;
  state: string;
  runnable: number;
  active: number;
  result_json: string | null;
}

/** Tasks keyed by their parameters, e.g. "0.01/1" for lr 0.01, seed 1. */
async function tasks(db: Db): Promise<Row[]> {
  const rows = await db.all<Omit<Row, "key"> & { params_json: string }>(
    "SELECT id, params_json, phase, state, runnable, active, result_json FROM tasks ORDER BY id",
  );
  return rows.map(({ params_json, ...row }) => {
    const params = JSON.parse(params_json) as { lr: number; seed: number };
    return { ...row, key: `${params.lr}/${params.seed}` };
  });
}

async function byKey(db: Db): Promise<Map<string, Row>> {
  return new Map((await tasks(db)).map((row) => [row.key, row]));
}

async function placements(db: Db): Promise<string[]> {
  const rows = await db.all<{ params_json: string; rest: string }>(
    `SELECT t.params_json, ' ' || p.phase || ' ' || p.output_dir || (CASE WHEN p.active = 1 THEN '' ELSE ' inactive' END) AS rest
       FROM placements p JOIN tasks t ON t.id = p.task_id ORDER BY p.phase, t.id, p.output_dir`,
  );
  return rows.map((row) => {
    const params = JSON.parse(row.params_json) as { lr: number; seed: number };
    return `${params.lr}/${params.seed}${row.rest}`;
  });
}

const anyFits = () => ({ gpuIds: [] });

/** Runs one claimable task to the given end; returns its id. */
async function runOne(db: Db, outcome: "succeeded" | "failed", metrics: Record<string, unknown> = {}) {
  const claim = await claimTask(db, { worker: "w", host: "h", now: NOW, leaseMs: 60_000, fits: anyFits });
  if (!claim) throw new Error("nothing to claim");
  await finishAttempt(
    db,
    claim.attemptId,
    outcome === "succeeded"
      ? { kind: "succeeded", metrics, wallSeconds: 1 }
      : { kind: "failed", exitCode: 1, signal: null, error: "exit 1", wallSeconds: 1 },
    NOW,
  );
  return claim.task.id;
}

// warmup and main share lr 0.01 (both seeds): 8 grid points, 6 tasks.
const TWO_PHASES = `
command: python train.py --lr {lr} --seed {seed}
output_dir: results/{phase}
retries: 0
warmup:
  combinations:
    - lr: [0.1, 0.01]
    - seed: [1, 2]
main:
  combinations:
    - lr: [0.01, 0.001]
    - seed: [1, 2]
`;

describe.each(backends)("on $name", (each) => {
  beforeEach(() => {
    backend = each;
  });

  describe("syncSweep: first sync", () => {
    it("counts unique and merged grid points of two phases that share points", async () => {
      const db = await freshLedger();
      const report = await syncSweep(db, sweepOf(TWO_PHASES), NOW);
      expect(report).toEqual({
        unique: 6,
        merged: 2,
        added: 6,
        dropped: 0,
        phases: [
          { name: "warmup", tasks: 4, merged: 0 },
          { name: "main", tasks: 4, merged: 2 },
        ],
      });
      const rows = await tasks(db);
      expect(rows.map((row) => row.key)).toEqual([
        "0.1/1",
        "0.1/2",
        "0.01/1",
        "0.01/2",
        "0.001/1",
        "0.001/2",
      ]);
      // A shared task is declared by the first phase that lists it.
      expect(rows.map((row) => row.phase)).toEqual(["warmup", "warmup", "warmup", "warmup", "main", "main"]);
      expect(rows.every((row) => row.state === "pending" && row.active === 1)).toBe(true);
      expect(new Set(rows.map((row) => row.id)).size).toBe(6);
    });

    it("places each task once per (phase, output dir)", async () => {
      const db = await freshLedger();
      await syncSweep(db, sweepOf(TWO_PHASES), NOW);
      expect(await placements(db)).toEqual([
        "0.01/1 main /tmp/x/results/main",
        "0.01/2 main /tmp/x/results/main",
        "0.001/1 main /tmp/x/results/main",
        "0.001/2 main /tmp/x/results/main",
        "0.1/1 warmup /tmp/x/results/warmup",
        "0.1/2 warmup /tmp/x/results/warmup",
        "0.01/1 warmup /tmp/x/results/warmup",
        "0.01/2 warmup /tmp/x/results/warmup",
      ]);
    });

    it("places a task by its own output dir when output_dir uses a parameter", async () => {
      const db = await freshLedger();
      await syncSweep(
        db,
        sweepOf(`
command: run {lr} {seed}
output_dir: out/seed{seed}
a:
  combinations:
    - lr: [1]
    - seed: [1, 2]
b:
  output_dir: out/shared
  combinations:
    - lr: [1]
    - seed: [2]
`),
        NOW,
      );
      expect(await placements(db)).toEqual([
        "1/1 a /tmp/x/out/seed1",
        "1/2 a /tmp/x/out/seed2",
        "1/2 b /tmp/x/out/shared",
      ]);
    });

    it("stores each phase with its position, cwd, policy and gate", async () => {
      const db = await freshLedger();
      await syncSweep(
        db,
        sweepOf(
          `${TWO_PHASES.replace("main:\n", "main:\n  after: [warmup]\n  gate: {min_success: 0.5}\n  retries: 4\n")}`,
        ),
        NOW,
      );
      const phases = await db.all<Record<string, unknown>>(
        "SELECT name, position, cwd, config_file, state, after_json, gate_json, policy_json FROM phases ORDER BY position",
      );
      expect(phases).toEqual([
        {
          name: "warmup",
          position: 0,
          cwd: "/tmp/x",
          config_file: FILE,
          state: "open",
          after_json: "[]",
          gate_json: '{"kind":"all_succeeded"}',
          policy_json: expect.stringContaining('"retries":0'),
        },
        {
          name: "main",
          position: 1,
          cwd: "/tmp/x",
          config_file: FILE,
          state: "waiting",
          after_json: '["warmup"]',
          gate_json: '{"kind":"min_success","ratio":0.5}',
          policy_json: expect.stringContaining('"retries":4'),
        },
      ]);
    });
  });

  describe("syncSweep: syncing again", () => {
    it("re-syncing the same sweep adds nothing and keeps states and results", async () => {
      const db = await freshLedger();
      const sweep = sweepOf(TWO_PHASES);
      await syncSweep(db, sweep, NOW);
      await runOne(db, "succeeded", { acc: 0.9 });
      await runOne(db, "failed");
      const before = await tasks(db);
      const placed = await placements(db);
      const report = await syncSweep(db, sweep, NOW + 1);
      expect(report).toMatchObject({ unique: 6, merged: 2, added: 0, dropped: 0 });
      expect(await tasks(db)).toEqual(before);
      expect(before.slice(0, 2).map((row) => [row.state, row.result_json])).toEqual([
        ["succeeded", '{"acc":0.9}'],
        ["failed", null],
      ]);
      expect(await placements(db)).toEqual(placed);
      expect(await db.one("SELECT count(*) AS n FROM attempts")).toEqual({ n: 2 });
    });

    it("an edited sweep adds new tasks and marks removed ones inactive; re-adding revives them", async () => {
      const db = await freshLedger();
      await syncSweep(db, sweepOf(TWO_PHASES), NOW);
      const firstId = await runOne(db, "succeeded", { acc: 0.5 }); // 0.1/1
      const original = await byKey(db);
      expect(original.get("0.1/1")?.id).toBe(firstId);

      // warmup loses lr 0.1 and gains lr 0.5.
      const edited = TWO_PHASES.replace("lr: [0.1, 0.01]", "lr: [0.5, 0.01]");
      const second = await syncSweep(db, sweepOf(edited), NOW + 1);
      expect(second).toMatchObject({ unique: 6, merged: 2, added: 2, dropped: 2 });
      const afterEdit = await byKey(db);
      expect(afterEdit.get("0.1/1")).toMatchObject({ active: 0, state: "succeeded" });
      expect(afterEdit.get("0.1/2")).toMatchObject({ active: 0, state: "pending" });
      expect(afterEdit.get("0.5/1")).toMatchObject({ active: 1, state: "pending", runnable: 1 });
      expect(afterEdit.get("0.5/1")?.id).toBeGreaterThan(
        Math.max(...[...original.values()].map((r) => r.id)),
      );
      expect((await placements(db)).filter((line) => line.endsWith("inactive"))).toEqual([
        "0.1/1 warmup /tmp/x/results/warmup inactive",
        "0.1/2 warmup /tmp/x/results/warmup inactive",
      ]);
      // Nothing else moved.
      for (const key of ["0.01/1", "0.01/2", "0.001/1", "0.001/2"])
        expect(afterEdit.get(key)).toEqual(original.get(key));

      // Back to the original: the dropped tasks return with their ids and states; the new ones drop.
      const third = await syncSweep(db, sweepOf(TWO_PHASES), NOW + 2);
      expect(third).toMatchObject({ unique: 6, merged: 2, added: 0, dropped: 2 });
      const revived = await byKey(db);
      expect(revived.get("0.1/1")).toEqual(original.get("0.1/1"));
      expect(revived.get("0.1/2")).toEqual(original.get("0.1/2"));
      expect(revived.get("0.5/1")).toMatchObject({ active: 0 });
      expect(revived.get("0.5/2")).toMatchObject({ active: 0 });
      expect(await db.one("SELECT count(*) AS n FROM tasks")).toEqual({ n: 8 });
    });

    it("a dropped phase is marked inactive, and its tasks too unless another phase lists them", async () => {
      const db = await freshLedger();
      await syncSweep(db, sweepOf(TWO_PHASES), NOW);
      const onlyMain = TWO_PHASES.replace(/warmup:\n(?: {2}.*\n)+/, "");
      const report = await syncSweep(db, sweepOf(onlyMain), NOW + 1);
      expect(report).toMatchObject({ unique: 4, merged: 0, added: 0, dropped: 2 });
      expect(await db.all("SELECT name, active FROM phases ORDER BY name")).toEqual([
        { name: "main", active: 1 },
        { name: "warmup", active: 0 },
      ]);
      const rows = await byKey(db);
      expect(rows.get("0.01/1")).toMatchObject({ active: 1, phase: "warmup" });
      expect(rows.get("0.1/1")).toMatchObject({ active: 0 });
    });
  });

  describe("syncSweep: runnable flags", () => {
    const GATED = TWO_PHASES.replace("main:\n", "main:\n  after: [warmup]\n");

    it("tasks of a phase without `after` are runnable at once", async () => {
      const db = await freshLedger();
      await syncSweep(db, sweepOf(TWO_PHASES), NOW);
      expect((await tasks(db)).map((row) => row.runnable)).toEqual([1, 1, 1, 1, 1, 1]);
    });

    it("tasks of a phase with `after` wait until evaluateGates opens it; shared ones run at once", async () => {
      const db = await freshLedger();
      await syncSweep(db, sweepOf(GATED), NOW);
      const flags = async () => Object.fromEntries((await tasks(db)).map((row) => [row.key, row.runnable]));
      // 0.01/* are in open warmup and waiting main: runnable.
      expect(await flags()).toEqual({
        "0.1/1": 1,
        "0.1/2": 1,
        "0.01/1": 1,
        "0.01/2": 1,
        "0.001/1": 0,
        "0.001/2": 0,
      });
      expect(await evaluateGates(db, NOW)).toBe(true); // reason updated, still waiting
      expect(await db.one("SELECT state FROM phases WHERE name = 'main'")).toEqual({ state: "waiting" });
      expect(await flags()).toMatchObject({ "0.001/1": 0, "0.001/2": 0 });
      for (let i = 0; i < 4; i++) await runOne(db, "succeeded");
      // Only warmup's tasks were claimable.
      expect((await tasks(db)).filter((row) => row.state === "succeeded").map((row) => row.key)).toEqual([
        "0.1/1",
        "0.1/2",
        "0.01/1",
        "0.01/2",
      ]);
      expect(await claimTask(db, { worker: "w", host: "h", now: NOW, leaseMs: 1, fits: anyFits })).toBeNull();
      expect(await evaluateGates(db, NOW)).toBe(true);
      expect(await db.one("SELECT state FROM phases WHERE name = 'main'")).toEqual({ state: "open" });
      expect(await flags()).toMatchObject({ "0.001/1": 1, "0.001/2": 1 });
    });

    it("a task shared with an open phase declared later is runnable too", async () => {
      const db = await freshLedger();
      // `after` may point forward: the waiting phase is declared (and inserts the shared task) first.
      await syncSweep(
        db,
        sweepOf(`
command: python train.py --lr {lr} --seed {seed}
late:
  after: [early]
  combinations:
    - lr: [1, 2]
    - seed: [1]
early:
  combinations:
    - lr: [2, 3]
    - seed: [1]
`),
        NOW,
      );
      expect((await tasks(db)).map((row) => [row.key, row.phase, row.runnable])).toEqual([
        ["1/1", "late", 0],
        ["2/1", "late", 1],
        ["3/1", "early", 1],
      ]);
    });

    it("a known task that moves from an open phase into a waiting one stops being runnable", async () => {
      const db = await freshLedger();
      const v1 = `
command: python train.py --lr {lr} --seed {seed}
a:
  combinations:
    - lr: [1, 2]
    - seed: [1]
b:
  after: [a]
  combinations:
    - lr: [3]
    - seed: [1]
`;
      await syncSweep(db, sweepOf(v1), NOW);
      await evaluateGates(db, NOW);
      // lr 2 leaves open phase a for gated phase b; a gains lr 5, so b's wait reason stays the same.
      const v2 = v1.replace("lr: [1, 2]", "lr: [1, 5]").replace("lr: [3]", "lr: [2, 3]");
      await syncSweep(db, sweepOf(v2), NOW + 1);
      expect((await byKey(db)).get("2/1")).toMatchObject({ active: 1, runnable: 0 });
      await evaluateGates(db, NOW + 1);
      expect((await byKey(db)).get("2/1")).toMatchObject({ active: 1, runnable: 0 });
      const claimed: string[] = [];
      for (;;) {
        const claim = await claimTask(db, { worker: "w", host: "h", now: NOW, leaseMs: 1, fits: anyFits });
        if (!claim) break;
        claimed.push(String(claim.task.params.lr));
      }
      expect(claimed).toEqual(["1", "5"]);
    });

    it("new tasks of an already open gated phase are runnable when synced in", async () => {
      const db = await freshLedger();
      await syncSweep(db, sweepOf(GATED), NOW);
      for (let i = 0; i < 4; i++) await runOne(db, "succeeded");
      await evaluateGates(db, NOW);
      const grown = GATED.replace("lr: [0.01, 0.001]", "lr: [0.01, 0.001, 0.0001]");
      expect(await syncSweep(db, sweepOf(grown), NOW + 1)).toMatchObject({ added: 2 });
      expect((await byKey(db)).get("0.0001/1")).toMatchObject({ runnable: 1, state: "pending" });
    });
  });
});
