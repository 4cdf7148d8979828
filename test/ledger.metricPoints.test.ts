import { beforeEach, describe, expect, it } from "vitest";
import type { Db } from "../src/ledger/db.js";
import { evaluateGates } from "../src/ledger/evaluateGates.js";
import { finishAttempt } from "../src/ledger/finishAttempt.js";
import { metricNames, seriesAcrossTasks, taskSeries } from "../src/ledger/reads/series.js";
import { recordPoints } from "../src/ledger/recordPoints.js";
import { syncSweep } from "../src/ledger/syncSweep.js";
import type { Lease, MetricPoint } from "../src/protocol/interfaces.js";
import { MAX_POINTS_PER_SERIES, MAX_SERIES_PER_TASK } from "../src/protocol/points.js";
import { loadSweep } from "../src/sweep/loadSweep.js";
import { claimOrThrow } from "./helpers/claims.js";
import { type LedgerBackend, useLedgerBackends } from "./helpers/postgres.js";

const NOW = 13_000_000;
const SWEEP = `
command: train {lr} {seed}
retries: 2
a:
  combinations:
    - lr: [0.1, 0.01]
    - seed: [1]
`;

// Every case runs on SQLite and on PostgreSQL (a server started for this file).
const backends = useLedgerBackends();
let backend: LedgerBackend;

async function ledger(): Promise<Db> {
  const { db } = await backend.open();
  await syncSweep(db, loadSweep([{ file: "/tmp/m/sweep.yaml", text: SWEEP }]), NOW);
  await evaluateGates(db, NOW);
  return db;
}

const claim = (db: Db, worker = "w"): Promise<Lease> => claimOrThrow(db, { worker, now: NOW });

const point = (step: number, metrics: Record<string, number>): MetricPoint => ({
  step,
  time: 1000 + step,
  metrics,
});
const steps = (from: number, to: number, metric = "loss") =>
  Array.from({ length: to - from }, (_, i) => point(from + i, { [metric]: (from + i) / 10 }));

describe.each(backends)("on $name", (each) => {
  beforeEach(() => {
    backend = each;
  });

  it("stores a resend once: the same points twice leave one row per step", async () => {
    const db = await ledger();
    const lease = await claim(db);
    const batch = [
      {
        attemptId: lease.attemptId,
        points: [point(0, { loss: 1, "val.acc": 0.5 }), point(1, { loss: 0.5 })],
      },
    ];
    expect(await recordPoints(db, batch, "w")).toEqual({ stored: 3, dropped: 0, taskIds: [lease.task.id] });
    await recordPoints(db, batch, "w");
    expect(await taskSeries(db, lease.task.id)).toEqual({
      loss: { steps: [0, 1], values: [1, 0.5], attempts: [1, 1] },
      "val.acc": { steps: [0], values: [0.5], attempts: [1] },
    });
    const counted = await db.all<{ name: string; points: number }>(
      "SELECT name, points FROM metric_series ORDER BY name",
    );
    expect(counted.map((row) => [row.name, Number(row.points)])).toEqual([
      ["loss", 2],
      ["val.acc", 1],
    ]);
  });

  it("lets a later attempt replace a step, never an earlier attempt's late resend", async () => {
    const db = await ledger();
    const first = await claim(db);
    await recordPoints(db, [{ attemptId: first.attemptId, points: steps(0, 5) }]);
    await finishAttempt(db, first.attemptId, { kind: "interrupted", error: "stopped" }, NOW);
    const second = await claim(db);
    expect(second.task.id).toBe(first.task.id);
    expect(second.attemptNumber).toBe(2);
    await recordPoints(db, [
      { attemptId: second.attemptId, points: [point(1, { loss: 9 }), point(2, { loss: 8 })] },
    ]);
    // The first attempt's points arrive again (its agent resent them after an outage): ignored.
    await recordPoints(db, [{ attemptId: first.attemptId, points: steps(0, 5) }]);
    expect((await taskSeries(db, first.task.id))?.loss).toEqual({
      steps: [0, 1, 2, 3, 4],
      values: [0, 9, 8, 0.3, 0.4],
      attempts: [1, 2, 2, 1, 1],
    });
  });

  it("thins a series past the bound, keeping its first and last points", async () => {
    const db = await ledger();
    const lease = await claim(db);
    const total = MAX_POINTS_PER_SERIES * 3;
    for (let from = 0; from < total; from += 250)
      await recordPoints(db, [{ attemptId: lease.attemptId, points: steps(from, from + 250) }]);
    const loss = (await taskSeries(db, lease.task.id))?.loss;
    expect(loss?.steps.length).toBeLessThanOrEqual(MAX_POINTS_PER_SERIES);
    expect(loss?.steps.length).toBeGreaterThan(MAX_POINTS_PER_SERIES / 4);
    expect(loss?.steps[0]).toBe(0);
    expect(loss?.steps.at(-1)).toBe(total - 1);
    // The count the bound relies on is the truth.
    const row = await db.one<{ points: number }>("SELECT points FROM metric_series WHERE name = 'loss'");
    expect(Number(row?.points)).toBe(loss?.steps.length);
    // Thinned steps sent again (a resend) are counted right, not assumed new.
    await recordPoints(db, [{ attemptId: lease.attemptId, points: steps(0, 40) }]);
    const again = await db.one<{ points: number }>("SELECT points FROM metric_series WHERE name = 'loss'");
    expect(Number(again?.points)).toBe((await taskSeries(db, lease.task.id))?.loss?.steps.length);
  });

  it("caps a task's metric names and drops hostile values, names and attempts", async () => {
    const db = await ledger();
    const lease = await claim(db);
    const many: Record<string, number> = {};
    for (let i = 0; i < MAX_SERIES_PER_TASK + 50; i++) many[`m${String(i).padStart(3, "0")}`] = i;
    const first = await recordPoints(db, [{ attemptId: lease.attemptId, points: [point(0, many)] }]);
    expect(first).toMatchObject({ stored: MAX_SERIES_PER_TASK, dropped: 50 });
    // Known names still take points; new ones do not.
    const next = await recordPoints(db, [
      { attemptId: lease.attemptId, points: [point(1, { m000: 1, brand_new: 2 })] },
    ]);
    expect(next).toMatchObject({ stored: 1, dropped: 1 });
    const hostile = await recordPoints(db, [
      {
        attemptId: lease.attemptId,
        points: [
          { step: -1, time: 1, metrics: { m001: 1 } },
          { step: 1.5, time: 1, metrics: { m001: 1 } },
          {
            step: 2,
            time: 1,
            metrics: { m001: Number.NaN, m002: Number.POSITIVE_INFINITY, ["x".repeat(201)]: 1 },
          },
        ],
      },
      { attemptId: 999_999, points: [point(0, { loss: 1 })] },
    ]);
    expect(hostile).toEqual({ stored: 0, dropped: 6, taskIds: [] });
    // Another agent's attempt is refused when the worker is checked.
    expect(
      await recordPoints(db, [{ attemptId: lease.attemptId, points: [point(5, { m000: 1 })] }], "other"),
    ).toMatchObject({ stored: 0, dropped: 1 });
    expect(Object.keys((await taskSeries(db, lease.task.id)) ?? {})).toHaveLength(MAX_SERIES_PER_TASK);
  });

  it("lists metric names and one metric across tasks with their params", async () => {
    const db = await ledger();
    const a = await claim(db);
    const b = await claim(db);
    await recordPoints(db, [
      { attemptId: a.attemptId, points: [point(0, { loss: 1, acc: 0.1 }), point(1, { loss: 0.5 })] },
      { attemptId: b.attemptId, points: [point(0, { loss: 2 })] },
    ]);
    expect(await metricNames(db)).toEqual(["acc", "loss"]);
    expect(await metricNames(db, "a")).toEqual(["acc", "loss"]);
    const across = await seriesAcrossTasks(db, "loss", "a");
    expect(across.truncated).toBe(false);
    expect(across.tasks.map((task) => [task.taskId, task.params.lr, task.steps, task.values])).toEqual([
      [a.task.id, a.task.params.lr, [0, 1], [1, 0.5]],
      [b.task.id, b.task.params.lr, [0], [2]],
    ]);
    expect((await seriesAcrossTasks(db, "nope")).tasks).toEqual([]);
  });
});
