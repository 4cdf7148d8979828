/**
 * on_oom in the ledger, on SQLite and PostgreSQL, through finishAttempt and the batched
 * finishAttempts: an attempt that ran out of memory is retried at once with the parameter
 * scaled, spending no retry; the next lease runs the scaled value (parameters and command) while
 * the task's stored parameters keep the declared one; at min it is a plain failure.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { claimTasks } from "../src/ledger/claimTasks.js";
import type { Db } from "../src/ledger/db.js";
import { finishAttempt } from "../src/ledger/finishAttempt.js";
import { finishAttempts } from "../src/ledger/finishAttempts.js";
import { syncSweep } from "../src/ledger/syncSweep.js";
import type { AttemptOutcome, Lease } from "../src/protocol/interfaces.js";
import { loadSweep } from "../src/sweep/loadSweep.js";
import { claimOrThrow } from "./helpers/claims.js";
import { type LedgerBackend, useLedgerBackends } from "./helpers/postgres.js";

const NOW = 9_000_000;
const backends = useLedgerBackends();
let backend: LedgerBackend;

async function ledgerWith(onOom: string): Promise<Db> {
  const { db } = await backend.open();
  const text = `
command: python3 train.py --bs {batch_size} --lr {lr}
retries: 1
backoff: 1m
train:
  ${onOom}
  combinations:
    - batch_size: [64]
    - lr: [0.0]
`;
  await syncSweep(db, loadSweep([{ file: "/tmp/oom/sweep.yaml", text }]), NOW);
  return db;
}

const REQUEST = { worker: "w", host: "h", now: NOW, leaseMs: 60_000, fits: () => ({ gpuIds: [] }) };

/** The batch claim (PostgreSQL's own statement) hands out the same lease. */
async function claimBatch(db: Db): Promise<Lease> {
  const [lease] = await claimTasks(db, REQUEST, 4);
  if (!lease) throw new Error("nothing to claim");
  return lease;
}

const claim = (db: Db): Promise<Lease> => claimOrThrow(db, { now: NOW });

const oom: AttemptOutcome = {
  kind: "oom",
  exitCode: 1,
  signal: null,
  error: "out of GPU memory (CUDA out of memory)",
  wallSeconds: 2,
  oom: "CUDA out of memory",
};

async function taskRow(db: Db) {
  return db.one<{
    state: string;
    attempts: number;
    not_before: number;
    oom_value: number | null;
    oom_retries: number;
    params_json: string;
  }>("SELECT state, attempts, not_before, oom_value, oom_retries, params_json FROM tasks WHERE id = 1");
}

const finishers = {
  finishAttempt: (db: Db, attemptId: number, outcome: AttemptOutcome) =>
    finishAttempt(db, attemptId, outcome, NOW),
  finishAttempts: async (db: Db, attemptId: number, outcome: AttemptOutcome) =>
    (await finishAttempts(db, [{ attemptId, outcome }], NOW))[0],
};

describe.each(backends)("on $name", (each) => {
  beforeEach(() => {
    backend = each;
  });

  describe.each(Object.entries(finishers))("through %s", (_name, finish) => {
    it("retries at once with the parameter halved, spending no retry, until min; then fails as usual", async () => {
      const db = await ledgerWith("on_oom: {param: batch_size, factor: 0.5, min: 16}");
      const first = await claim(db);
      expect(first.task.params.batch_size).toBe(64);
      expect(first.task.command).toBe("python3 train.py --bs 64 --lr 0.0");

      expect(await finish(db, first.attemptId, oom)).toEqual({
        taskState: "pending",
        finalFailure: false,
        retryAt: null,
      });
      expect(await taskRow(db)).toMatchObject({
        state: "pending",
        attempts: 0,
        not_before: 0,
        oom_value: 32,
        oom_retries: 1,
      });
      const second = await claimBatch(db);
      // The lease runs the scaled value; the task's identity and stored parameters keep 64.
      expect(second.task.params).toEqual({ batch_size: 32, lr: 0 });
      expect(second.task.command).toBe("python3 train.py --bs 32 --lr 0.0");
      expect(second.task.signature).toBe(first.task.signature);
      expect(JSON.parse((await taskRow(db))?.params_json ?? "")).toEqual({ batch_size: 64, lr: 0 });

      await finish(db, second.attemptId, oom);
      const third = await claim(db);
      expect(third.task.params.batch_size).toBe(16);
      expect(await taskRow(db)).toMatchObject({ attempts: 0, oom_value: 16, oom_retries: 2 });

      // At min: a failure like any other — a retry spent, with backoff.
      const atMin = await finish(db, third.attemptId, oom);
      expect(atMin).toMatchObject({ taskState: "pending", finalFailure: false });
      expect(await taskRow(db)).toMatchObject({
        state: "pending",
        attempts: 1,
        oom_value: 16,
        oom_retries: 2,
      });
      expect((await taskRow(db))?.not_before).toBeGreaterThan(NOW);
      const attempt = await db.one<{ outcome: string; error: string }>(
        "SELECT outcome, error FROM attempts WHERE id = $1",
        [third.attemptId],
      );
      expect(attempt).toEqual({
        outcome: "oom",
        error: "out of GPU memory (CUDA out of memory) with batch_size 16: on_oom shrinks it no further",
      });
    });

    it("without on_oom, an oom is a failure that spends a retry and keeps its wording", async () => {
      const db = await ledgerWith("retries: 0");
      const lease = await claim(db);
      expect(await finish(db, lease.attemptId, oom)).toEqual({
        taskState: "failed",
        finalFailure: true,
        retryAt: null,
      });
      expect(await taskRow(db)).toMatchObject({
        state: "failed",
        attempts: 1,
        oom_value: null,
        oom_retries: 0,
      });
      const attempt = await db.one<{ outcome: string; error: string }>(
        "SELECT outcome, error FROM attempts WHERE id = $1",
        [lease.attemptId],
      );
      expect(attempt).toEqual({ outcome: "oom", error: "out of GPU memory (CUDA out of memory)" });
    });

    it("a plain failure under on_oom spends a retry and leaves the value alone", async () => {
      const db = await ledgerWith("on_oom: {param: batch_size}");
      const lease = await claim(db);
      const failed: AttemptOutcome = {
        kind: "failed",
        exitCode: 2,
        signal: null,
        error: "exit code 2",
        wallSeconds: 1,
      };
      await finish(db, lease.attemptId, failed);
      expect(await taskRow(db)).toMatchObject({ attempts: 1, oom_value: null, oom_retries: 0 });
    });
  });
});
