/**
 * The dashboard's queries on both ledger backends (SQLite and a throw-away PostgreSQL): the
 * overview against the ledger's own per-phase counts, keyset pages in every sort, the filters
 * (JSON access differs per dialect), a task's page, results and mean ± std over seeds, and the
 * machines list. The same sweep is synced on each and its outcomes recorded as finishAttempt does.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { listMachines } from "../src/dashboard/machines.js";
import { registerAgent } from "../src/ledger/agents.js";
import type { Db } from "../src/ledger/db.js";
import { evaluateGates } from "../src/ledger/evaluateGates.js";
import { computeOverview, placementsAreSimple } from "../src/ledger/reads/overview.js";
import { PlotCache, plotData } from "../src/ledger/reads/plot.js";
import { resultFields, resultsPage } from "../src/ledger/reads/results.js";
import { taskDetail } from "../src/ledger/reads/taskDetail.js";
import { type TaskListRow, type TaskQuery, taskPage } from "../src/ledger/reads/tasks.js";
import { syncSweep } from "../src/ledger/syncSweep.js";
import { phaseProgress } from "../src/ledger/taskCounts.js";
import { loadSweep } from "../src/sweep/loadSweep.js";
import { GpuTelemetry } from "../src/telemetry/gpuTelemetry.js";
import { useLedgerBackends } from "./helpers/postgres.js";

const backends = useLedgerBackends();

const SWEEP = `retries: 0
main:
  command: echo {x} {group} {seed}
  output_dir: out
  combinations:
    - x: [1, 2, 3]
    - group: [a, b]
    - seed: [1, 2, 3]
shared:
  command: echo {x} {group} {seed}
  output_dir: shared
  combinations:
    - x: [3]
    - group: [b]
    - seed: [1, 2, 3, 4]
`;
const OFFSET: Record<number, number> = { 1: 0, 2: 1, 3: 5, 4: 2 };

/**
 * Syncs the sweep and records its outcome directly (as finishAttempt would leave it): acc = 10x
 * + (b ? 100 : 0) + a seed offset; (3, b, 3) fails with exit code 3.
 */
async function prepared(db: Db, stateDir: string): Promise<void> {
  const sweep = loadSweep([{ file: join(stateDir, "sweep.yaml"), text: SWEEP }]);
  await syncSweep(db, sweep, Date.now());
  await evaluateGates(db, Date.now());
  const tasks = await db.all<{ id: number; params_json: string }>(
    "SELECT id, params_json FROM tasks ORDER BY id",
  );
  const now = Date.now();
  for (const task of tasks) {
    const p = JSON.parse(task.params_json) as { x: number; group: string; seed: number };
    const fails = p.x === 3 && p.group === "b" && p.seed === 3;
    const finished = now - 60_000 + task.id * 1000;
    await db.run(
      `INSERT INTO attempts (task_id, number, worker, host, started_at, ended_at, outcome, exit_code, error)
       VALUES ($1, 1, 'w1', 'h1', $2, $3, $4, $5, $6)`,
      [
        task.id,
        finished - 500,
        finished,
        fails ? "failed" : "succeeded",
        fails ? 3 : 0,
        fails ? "exit code 3" : null,
      ],
    );
    if (fails)
      await db.run("UPDATE tasks SET state = 'failed', attempts = 1, finished_at = $2 WHERE id = $1", [
        task.id,
        finished,
      ]);
    else
      await db.run(
        `UPDATE tasks SET state = 'succeeded', result_json = $2, wall_seconds = $3, finished_at = $4, origin = 'run', host = 'h1'
          WHERE id = $1`,
        [
          task.id,
          JSON.stringify({ acc: p.x * 10 + (p.group === "b" ? 100 : 0) + (OFFSET[p.seed] ?? 0) }),
          p.x,
          finished,
        ],
      );
  }
  await db.run("INSERT INTO events (at, kind) VALUES ($1, 'test_outcomes')", [now]);
}

async function allPages(db: Db, query: TaskQuery): Promise<TaskListRow[]> {
  const rows: TaskListRow[] = [];
  for (let after: string | undefined, page = 0; page < 100; page++) {
    const result = await taskPage(db, { ...query, after }, null);
    rows.push(...result.rows);
    if (!result.next) return rows;
    after = result.next;
  }
  throw new Error("more than 100 pages");
}

describe.each(backends)("dashboard queries on $name", (backend) => {
  it("counts per phase like the ledger, even for tasks two phases share", async () => {
    const { db, stateDir } = await backend.open();
    await prepared(db, stateDir);
    // (3, b, seeds 1–3) are in both phases: not simple, so the overview joins placements.
    expect(await placementsAreSimple(db)).toBe(false);
    const overview = await computeOverview(db, { slots: async () => 4 }, false);
    expect(overview.totals).toMatchObject({ unique: 19, succeeded: 18, failed: 1 });
    expect(overview.phases.map(({ byState: _, ...phase }) => phase)).toEqual(await phaseProgress(db));
    expect(overview.rate.completions).toBe(19);
    expect(overview.eta).toMatchObject({ seconds: 0, slots: 4 });
  });

  it("pages by keyset in every sort, and filters by state, phase, parameter and text", async () => {
    const { db, stateDir } = await backend.open();
    await prepared(db, stateDir);
    const all = await allPages(db, { limit: 500 });
    expect(all).toHaveLength(19);
    for (const sort of ["id", "state", "phase", "wall", "finished"] as const)
      for (const dir of ["asc", "desc"] as const) {
        const ids = (await allPages(db, { sort, dir, limit: 4 })).map((row) => row.id);
        expect(
          [...ids].sort((a, b) => a - b),
          `${sort} ${dir}`,
        ).toEqual(all.map((row) => row.id));
      }
    const wall = await allPages(db, { sort: "wall", dir: "desc", limit: 4 });
    expect(wall.map((row) => row.wallSeconds)).toEqual(
      [...wall.map((row) => row.wallSeconds)].sort((a, b) => (a === null ? 1 : b === null ? -1 : b - a)),
    );
    expect((await allPages(db, { state: "failed" })).map((row) => row.params)).toEqual([
      { x: 3, group: "b", seed: 3 },
    ]);
    expect((await allPages(db, { phase: "shared", limit: 2 })).map((row) => row.params.seed)).toEqual([
      1, 2, 3, 4,
    ]);
    const x2 = await allPages(db, { params: [{ key: "x", value: "2" }], limit: 2 });
    expect(x2).toHaveLength(6);
    expect(await allPages(db, { params: [{ key: "x", value: "2.0" }] })).toEqual(x2);
    expect(
      await allPages(db, {
        params: [
          { key: "group", value: "b" },
          { key: "seed", value: "4" },
        ],
      }),
    ).toHaveLength(1);
    expect(await allPages(db, { text: "echo 3 B" })).toHaveLength(4);
    expect(await allPages(db, { text: "50%" })).toEqual([]);
    const failed = (await allPages(db, { state: "failed" }))[0] as TaskListRow;
    const detail = await taskDetail(db, failed.id);
    expect(detail?.error).toMatchObject({ attempt: 1, exitCode: 3 });
    expect(detail?.placements.map((placement) => placement.phase)).toEqual(["main", "shared"]);
  });

  it("averages over seeds, from SQL and one by one alike; lists results and machines", async () => {
    const { db, stateDir } = await backend.open();
    await prepared(db, stateDir);
    const query = { x: "x", y: "acc", series: "group" };
    const fresh = await plotData(db, query);
    const aggregated = await new PlotCache(db, 2, () => Date.now() + 3_600_000).plot(query);
    for (const plot of [fresh, aggregated]) {
      expect(plot.used).toBe(18);
      const [a, b] = plot.facets[0]?.series ?? [];
      expect(a?.points.map((point) => point.mean)).toEqual([12, 22, 32].map((v) => expect.closeTo(v, 9)));
      expect(a?.points.every((point) => Math.abs(point.std - Math.sqrt(7)) < 1e-9)).toBe(true);
      // (3, b): seeds 1, 2, 4 (seed 3 failed): 130, 131, 132.
      expect(b?.points[2]).toMatchObject({ x: 3, n: 3, min: 130, max: 132 });
      expect(b?.points[2]?.mean).toBeCloseTo(131, 9);
      expect(b?.points[2]?.std).toBeCloseTo(1, 9);
    }
    const phase = await plotData(db, { ...query, phase: "shared" });
    expect(phase.used).toBe(3);
    const fields = await resultFields(db);
    expect(fields.metrics).toEqual(["acc"]);
    expect(fields.params.map((param) => param.name).sort()).toEqual(["group", "seed", "x"]);
    expect(fields.results).toBe(18);
    const page = await resultsPage(db, { limit: 10 });
    expect(page.rows).toHaveLength(10);
    expect((await resultsPage(db, { limit: 10, after: page.next as string })).rows).toHaveLength(8);

    await registerAgent(db, { id: "g1", name: "g1", host: "box", info: { slots: 2, gpus: [] } }, Date.now());
    const machines = await listMachines(db, new GpuTelemetry(), []);
    expect(machines).toEqual([
      expect.objectContaining({ id: "g1", slots: 2, state: "connected", running: [] }),
    ]);
  });
});
