/**
 * How the ledger records the two outcomes stops add: `preempted` goes back to pending at once with
 * no retry, backoff or loss spent, logged as `task_preempted`; `hung` spends a retry like a
 * timeout, and its error is what failed_experiments.csv gets. One at a time (finishAttempt) and in
 * a batch (finishAttempts, one statement on PostgreSQL), on SQLite and on PostgreSQL.
 */
import { beforeEach, describe, expect, it } from "vitest";
import type { Db } from "../src/ledger/db.js";
import { finishAttempt } from "../src/ledger/finishAttempt.js";
import { finishAttempts } from "../src/ledger/finishAttempts.js";
import { recentRequeues } from "../src/ledger/reads/recentTrouble.js";
import { syncSweep } from "../src/ledger/syncSweep.js";
import type { AttemptOutcome, Lease } from "../src/protocol/interfaces.js";
import { loadSweep } from "../src/sweep/loadSweep.js";
import { claimOrThrow } from "./helpers/claims.js";
import { type LedgerBackend, useLedgerBackends } from "./helpers/postgres.js";

const NOW = 7_000_000;
const backends = useLedgerBackends();
let backend: LedgerBackend;

async function ledgerWith(policy: string): Promise<Db> {
  const { db } = await backend.open();
  const text = `command: python train.py --lr {lr}\n${policy}\nonly:\n  combinations:\n    - lr: [1]\n`;
  await syncSweep(db, loadSweep([{ file: "/tmp/x/sweep.yaml", text }]), NOW);
  return db;
}

const claim = (db: Db, now: number): Promise<Lease> => claimOrThrow(db, { now });

const preempted: AttemptOutcome = {
  kind: "preempted",
  error: "preempted: stopped as its agent shut down; the next attempt resumes from its checkpoint",
  exitCode: 143,
  signal: null,
};
const hung: AttemptOutcome = {
  kind: "hung",
  exitCode: null,
  signal: "SIGTERM",
  error: "hung: no output, report or GPU use for 10m",
  wallSeconds: 601,
};

describe.each(backends)("on $name", (each) => {
  beforeEach(() => {
    backend = each;
  });

  for (const batched of [false, true]) {
    const finish = (db: Db, attemptId: number, outcome: AttemptOutcome, now: number) =>
      batched
        ? finishAttempts(db, [{ attemptId, outcome }], now).then(([result]) => result)
        : finishAttempt(db, attemptId, outcome, now);

    it(`${batched ? "finishAttempts" : "finishAttempt"}: preempted is pending at once, no retry, backoff or loss spent`, async () => {
      const db = await ledgerWith("retries: 0\nmax_lost: 1\nbackoff: 1h");
      let now = NOW;
      for (let round = 0; round < 3; round++) {
        const lease = await claim(db, now);
        const result = await finish(db, lease.attemptId, preempted, now);
        expect(result).toEqual({ taskState: "pending", finalFailure: false, retryAt: null });
        expect(await db.one("SELECT state, attempts, losses, not_before FROM tasks")).toEqual({
          state: "pending",
          attempts: 0,
          losses: 0,
          not_before: 0,
        });
        now += 1;
      }
      expect(await db.all("SELECT outcome, exit_code, error FROM attempts ORDER BY id")).toEqual(
        Array.from({ length: 3 }, () => ({ outcome: "preempted", exit_code: 143, error: preempted.error })),
      );
      expect(
        (await db.all<{ kind: string }>("SELECT kind FROM events WHERE kind = 'task_preempted'")).length,
      ).toBe(3);
      const requeues = await recentRequeues(db);
      expect(requeues[0]).toMatchObject({ taskId: 1, why: preempted.error });
      // retries: 0 still allows the one real attempt: it succeeds.
      const last = await claim(db, now);
      const done = await finish(db, last.attemptId, { kind: "succeeded", metrics: {}, wallSeconds: 1 }, now);
      expect(done).toMatchObject({ taskState: "succeeded" });
    });

    it(`${batched ? "finishAttempts" : "finishAttempt"}: hung spends a retry with backoff, then fails for good saying why`, async () => {
      const db = await ledgerWith("retries: 1\nbackoff: 2s");
      const first = await claim(db, NOW);
      expect(await finish(db, first.attemptId, hung, NOW)).toEqual({
        taskState: "pending",
        finalFailure: false,
        retryAt: NOW + 2000,
      });
      const second = await claim(db, NOW + 2000);
      expect(await finish(db, second.attemptId, hung, NOW + 2000)).toMatchObject({
        taskState: "failed",
        finalFailure: true,
      });
      expect(await db.one("SELECT state, attempts FROM tasks")).toEqual({ state: "failed", attempts: 2 });
      expect(await db.all("SELECT outcome, error FROM attempts ORDER BY id")).toEqual([
        { outcome: "hung", error: hung.error },
        { outcome: "hung", error: hung.error },
      ]);
    });
  }
});
