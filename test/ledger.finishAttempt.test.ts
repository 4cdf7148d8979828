import { beforeEach, describe, expect, it } from "vitest";
import type { Db } from "../src/ledger/db.js";
import { finishAttempt } from "../src/ledger/finishAttempt.js";
import { finishAttempts } from "../src/ledger/finishAttempts.js";
import { retryFailed } from "../src/ledger/retryFailed.js";
import { syncSweep } from "../src/ledger/syncSweep.js";
import type { AttemptOutcome, Lease } from "../src/protocol/interfaces.js";
import { loadSweep } from "../src/sweep/loadSweep.js";
import { claimOrThrow } from "./helpers/claims.js";
import { type LedgerBackend, useLedgerBackends } from "./helpers/postgres.js";

const NOW = 7_000_000;

// Every case runs on SQLite and on PostgreSQL (a server started for this file).
const backends = useLedgerBackends();
let backend: LedgerBackend;

async function ledgerWith(text: string): Promise<Db> {
  const { db } = await backend.open();
  await syncSweep(db, loadSweep([{ file: "/tmp/x/sweep.yaml", text }]), NOW);
  return db;
}

const claim = (db: Db, now = NOW): Promise<Lease> =>
  claimOrThrow(db, { host: "host-a", now, fits: () => ({ gpuIds: [0] }) });

const ONE_TASK = (policy: string) => `
command: python train.py --lr {lr}
${policy}
only:
  combinations:
    - lr: [1]
`;

const success = (metrics: Record<string, unknown> = { acc: 0.9 }): AttemptOutcome => ({
  kind: "succeeded",
  metrics,
  wallSeconds: 12.5,
});
const failure: AttemptOutcome = {
  kind: "failed",
  exitCode: 2,
  signal: null,
  error: "exit 2",
  wallSeconds: 1,
};
const timeout: AttemptOutcome = {
  kind: "timeout",
  exitCode: null,
  signal: "SIGKILL",
  error: "timed out",
  wallSeconds: 60,
};
const lost: AttemptOutcome = { kind: "lost", error: "worker gone" };

async function task(db: Db, id = 1) {
  return db.one<Record<string, unknown>>(
    "SELECT state, attempts, not_before, attempt_id, result_json, wall_seconds, host, gpu_ids, finished_at, origin FROM tasks WHERE id = $1",
    [id],
  );
}

async function resultRows(db: Db) {
  return db.all<{ task_id: number; output_dir: string; phase: string; written: number }>(
    "SELECT task_id, output_dir, phase, written FROM result_rows ORDER BY task_id, output_dir",
  );
}

describe.each(backends)("on $name", (each) => {
  beforeEach(() => {
    backend = each;
  });

  describe("finishAttempt: success", () => {
    it("stores the metrics and owes one result row per output dir", async () => {
      const db = await ledgerWith(`
command: python train.py --lr {lr}
a:
  output_dir: out/a
  combinations:
    - lr: [1]
b:
  output_dir: out/b
  combinations:
    - lr: [1]
`);
      const claimed = await claim(db);
      const result = await finishAttempt(db, claimed.attemptId, success(), NOW + 5);
      expect(result).toEqual({ taskState: "succeeded", finalFailure: false, retryAt: null });
      expect(await task(db)).toEqual({
        state: "succeeded",
        attempts: 0,
        not_before: 0,
        attempt_id: null,
        result_json: '{"acc":0.9}',
        wall_seconds: 12.5,
        host: "host-a",
        gpu_ids: "0",
        finished_at: NOW + 5,
        origin: "run",
      });
      expect(await resultRows(db)).toEqual([
        { task_id: 1, output_dir: "/tmp/x/out/a", phase: "a", written: 0 },
        { task_id: 1, output_dir: "/tmp/x/out/b", phase: "b", written: 0 },
      ]);
      expect(
        await db.one("SELECT ended_at, outcome FROM attempts WHERE id = $1", [claimed.attemptId]),
      ).toEqual({
        ended_at: NOW + 5,
        outcome: "succeeded",
      });
    });

    it("owes one row for a dir two phases share, carrying the first phase by position", async () => {
      // zeta is declared first but sorts last by name.
      const db = await ledgerWith(`
command: python train.py --lr {lr}
output_dir: out/shared
zeta:
  combinations:
    - lr: [1]
alpha:
  combinations:
    - lr: [1]
middle:
  output_dir: out/own
  combinations:
    - lr: [1]
`);
      await finishAttempt(db, (await claim(db)).attemptId, success(), NOW);
      expect(await resultRows(db)).toEqual([
        { task_id: 1, output_dir: "/tmp/x/out/own", phase: "middle", written: 0 },
        { task_id: 1, output_dir: "/tmp/x/out/shared", phase: "zeta", written: 0 },
      ]);
    });

    it("owes no rows to placements a re-sync dropped", async () => {
      const text = `
command: python train.py --lr {lr}
a:
  output_dir: out/a
  combinations:
    - lr: [1]
b:
  output_dir: out/b
  combinations:
    - lr: [1]
`;
      const db = await ledgerWith(text);
      const claimed = await claim(db);
      await syncSweep(
        db,
        loadSweep([{ file: "/tmp/x/sweep.yaml", text: text.replace(/b:\n(?: {2}.*\n)+/, "") }]),
        NOW,
      );
      await finishAttempt(db, claimed.attemptId, success(), NOW);
      expect((await resultRows(db)).map((row) => row.output_dir)).toEqual(["/tmp/x/out/a"]);
    });
  });

  describe("finishAttempt: failure and retries", () => {
    it("retries with exponential backoff, then fails for good after `retries` retries", async () => {
      const db = await ledgerWith(ONE_TASK("retries: 3\nbackoff: 2s"));
      const seen: unknown[] = [];
      let now = NOW;
      for (let n = 1; n <= 4; n++) {
        const claimed = await claim(db, now);
        expect(claimed.task.attempts).toBe(n - 1);
        const result = await finishAttempt(db, claimed.attemptId, n === 2 ? timeout : failure, now);
        const row = await task(db);
        seen.push([result.taskState, result.finalFailure, result.retryAt, row?.attempts, row?.not_before]);
        if (result.retryAt !== null) expect(row?.attempt_id).toBeNull();
        now = result.retryAt ?? now;
      }
      // backoff · 2^(n−1) after the n-th failure: 2 s, 4 s, 8 s; the fourth failure is final.
      expect(seen).toEqual([
        ["pending", false, NOW + 2_000, 1, NOW + 2_000],
        ["pending", false, NOW + 2_000 + 4_000, 2, NOW + 6_000],
        ["pending", false, NOW + 6_000 + 8_000, 3, NOW + 14_000],
        ["failed", true, null, 4, NOW + 14_000],
      ]);
      expect(await task(db)).toMatchObject({ state: "failed", finished_at: NOW + 14_000, result_json: null });
      expect(
        await db.all("SELECT number, outcome, exit_code, signal, error FROM attempts ORDER BY id"),
      ).toEqual([
        { number: 1, outcome: "failed", exit_code: 2, signal: null, error: "exit 2" },
        { number: 2, outcome: "timeout", exit_code: null, signal: "SIGKILL", error: "timed out" },
        { number: 3, outcome: "failed", exit_code: 2, signal: null, error: "exit 2" },
        { number: 4, outcome: "failed", exit_code: 2, signal: null, error: "exit 2" },
      ]);
      expect(await resultRows(db)).toEqual([]);
    });

    it("fails for good on the first failure with retries: 0", async () => {
      const db = await ledgerWith(ONE_TASK("retries: 0"));
      const result = await finishAttempt(db, (await claim(db)).attemptId, failure, NOW);
      expect(result).toEqual({ taskState: "failed", finalFailure: true, retryAt: null });
    });

    it("caps the backoff at 10 minutes", async () => {
      const db = await ledgerWith(ONE_TASK("retries: 5\nbackoff: 4m"));
      const delays: Array<number | null> = [];
      let now = NOW;
      for (let n = 1; n <= 3; n++) {
        const result = await finishAttempt(db, (await claim(db, now)).attemptId, failure, now);
        delays.push(result.retryAt === null ? null : result.retryAt - now);
        now = result.retryAt ?? now;
      }
      expect(delays).toEqual([240_000, 480_000, 600_000]);
    });

    it("interrupted and lost attempts go back to pending at once without spending a retry", async () => {
      const db = await ledgerWith(ONE_TASK("retries: 1\nbackoff: 1s"));
      const first = await claim(db);
      expect(await finishAttempt(db, first.attemptId, failure, NOW)).toMatchObject({ retryAt: NOW + 1_000 });
      let now = NOW + 1_000;
      for (const outcome of [
        { kind: "interrupted", error: "stopped by user", exitCode: null, signal: "SIGTERM" },
        lost,
        { kind: "interrupted", error: "stopped" },
      ] as AttemptOutcome[]) {
        const claimed = await claim(db, now);
        const result = await finishAttempt(db, claimed.attemptId, outcome, now);
        expect(result).toEqual({ taskState: "pending", finalFailure: false, retryAt: null });
        expect(await task(db)).toMatchObject({
          state: "pending",
          attempts: 1,
          not_before: 0,
          attempt_id: null,
        });
        now += 1;
      }
      expect(await db.one("SELECT outcome, signal, error FROM attempts WHERE number = 2")).toEqual({
        outcome: "interrupted",
        signal: "SIGTERM",
        error: "stopped by user",
      });
      // The one retry is still there: the next failure retries, the one after is final.
      expect((await finishAttempt(db, (await claim(db, now)).attemptId, failure, now)).finalFailure).toBe(
        true,
      );
    });

    it("a task lost max_lost times fails, saying why; a retry gives it a fresh count", async () => {
      const db = await ledgerWith(ONE_TASK("retries: 5\nmax_lost: 2"));
      let now = NOW;
      const first = await claim(db, now);
      expect(await finishAttempt(db, first.attemptId, lost, now)).toEqual({
        taskState: "pending",
        finalFailure: false,
        retryAt: null,
      });
      // The second loss through the batch path (one statement on PostgreSQL).
      const second = await claim(db, ++now);
      const [result] = await finishAttempts(db, [{ attemptId: second.attemptId, outcome: lost }], now);
      const why =
        /^lost 2 times: its agent died or stopped answering each time \(max_lost 2; last: worker gone\)$/;
      expect(result).toMatchObject({
        taskState: "failed",
        finalFailure: true,
        error: expect.stringMatching(why),
      });
      // No retry was spent: losses are counted apart.
      expect(await task(db)).toMatchObject({ state: "failed", attempts: 0, finished_at: now });
      const ended = await db.one<{ outcome: string; error: string }>(
        "SELECT outcome, error FROM attempts WHERE id = $1",
        [second.attemptId],
      );
      expect(ended?.outcome).toBe("lost");
      expect(ended?.error).toMatch(why);
      await retryFailed(db, ++now);
      const third = await claim(db, ++now);
      expect((await finishAttempt(db, third.attemptId, lost, now)).taskState).toBe("pending");
    });

    it("a ledger synced before max_lost existed fails a task at its third loss", async () => {
      const db = await ledgerWith(ONE_TASK("retries: 0"));
      const policy = JSON.parse(
        (await db.one<{ policy_json: string }>("SELECT policy_json FROM phases"))?.policy_json ?? "{}",
      );
      delete policy.maxLost;
      await db.run("UPDATE phases SET policy_json = $1", [JSON.stringify(policy)]);
      const states: string[] = [];
      for (let n = 1; n <= 3; n++)
        states.push((await finishAttempt(db, (await claim(db, NOW + n)).attemptId, lost, NOW + n)).taskState);
      expect(states).toEqual(["pending", "pending", "failed"]);
    });

    it("throws for an attempt that does not exist", async () => {
      const db = await ledgerWith(ONE_TASK(""));
      await expect(finishAttempt(db, 999, failure, NOW)).rejects.toThrow(/unknown attempt 999/);
    });
  });

  describe("finishAttempt: fencing", () => {
    it("ignores a failure from an attempt that is no longer current", async () => {
      const db = await ledgerWith(ONE_TASK("retries: 3"));
      const old = await claim(db);
      await finishAttempt(db, old.attemptId, lost, NOW);
      const current = await claim(db, NOW + 1);
      for (const outcome of [
        failure,
        timeout,
        lost,
        { kind: "interrupted", error: "x" },
      ] as AttemptOutcome[]) {
        expect(await finishAttempt(db, old.attemptId, outcome, NOW + 2)).toEqual({
          taskState: "ignored",
          finalFailure: false,
          retryAt: null,
        });
      }
      expect(await task(db)).toMatchObject({ state: "running", attempt_id: current.attemptId, attempts: 0 });
      // The current attempt still moves the task.
      expect((await finishAttempt(db, current.attemptId, failure, NOW + 3)).taskState).toBe("pending");
    });

    it("ignores a second report of an attempt that already ended", async () => {
      const db = await ledgerWith(ONE_TASK("retries: 3"));
      const claimed = await claim(db);
      await finishAttempt(db, claimed.attemptId, failure, NOW);
      expect((await finishAttempt(db, claimed.attemptId, failure, NOW + 1)).taskState).toBe("ignored");
      expect((await finishAttempt(db, claimed.attemptId, success(), NOW + 1)).taskState).toBe("ignored");
      expect(await task(db)).toMatchObject({ state: "pending", attempts: 1, result_json: null });
    });

    it("accepts a late success while the task has no result, but never a second success", async () => {
      const db = await ledgerWith(ONE_TASK("retries: 3"));
      const old = await claim(db);
      await finishAttempt(db, old.attemptId, lost, NOW);
      const current = await claim(db, NOW + 1);
      // The lost attempt's process finished after all: its result counts.
      expect(await finishAttempt(db, old.attemptId, success({ acc: 1 }), NOW + 2)).toEqual({
        taskState: "succeeded",
        finalFailure: false,
        retryAt: null,
      });
      expect(await task(db)).toMatchObject({
        state: "succeeded",
        result_json: '{"acc":1}',
        attempt_id: null,
      });
      // The attempt that was current by then is fenced off, success or not.
      expect((await finishAttempt(db, current.attemptId, success({ acc: 2 }), NOW + 3)).taskState).toBe(
        "ignored",
      );
      expect(await task(db)).toMatchObject({
        state: "succeeded",
        result_json: '{"acc":1}',
        finished_at: NOW + 2,
      });
      expect(await db.one("SELECT count(*) AS n FROM result_rows")).toEqual({ n: 1 });
      expect(await db.one("SELECT count(*) AS n FROM events WHERE kind = 'task_succeeded'")).toEqual({
        n: 1,
      });
    });

    it("accepts a late success for a task that failed for good", async () => {
      const db = await ledgerWith(ONE_TASK("retries: 0"));
      const old = await claim(db);
      await finishAttempt(db, old.attemptId, lost, NOW);
      const current = await claim(db, NOW + 1);
      expect((await finishAttempt(db, current.attemptId, failure, NOW + 2)).finalFailure).toBe(true);
      expect((await finishAttempt(db, old.attemptId, success(), NOW + 3)).taskState).toBe("succeeded");
      expect(await task(db)).toMatchObject({ state: "succeeded", result_json: '{"acc":0.9}' });
    });

    it("ignores a late success once the task has succeeded", async () => {
      const db = await ledgerWith(ONE_TASK("retries: 3"));
      const old = await claim(db);
      await finishAttempt(db, old.attemptId, lost, NOW);
      const current = await claim(db, NOW + 1);
      expect((await finishAttempt(db, current.attemptId, success({ acc: 2 }), NOW + 2)).taskState).toBe(
        "succeeded",
      );
      expect((await finishAttempt(db, old.attemptId, success({ acc: 1 }), NOW + 3)).taskState).toBe(
        "ignored",
      );
      expect(await task(db)).toMatchObject({ result_json: '{"acc":2}', finished_at: NOW + 2 });
      expect(await db.one("SELECT count(*) AS n FROM result_rows")).toEqual({ n: 1 });
    });
  });
});
