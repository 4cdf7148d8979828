import { beforeEach, describe, expect, it } from "vitest";
import { type ClaimRequest, claimTask, nextBackoffExpiry } from "../src/ledger/claimTask.js";
import type { Db } from "../src/ledger/db.js";
import { finishAttempt } from "../src/ledger/finishAttempt.js";
import { syncSweep } from "../src/ledger/syncSweep.js";
import { taskCounts } from "../src/ledger/taskCounts.js";
import type { Lease } from "../src/protocol/interfaces.js";
import { loadSweep } from "../src/sweep/loadSweep.js";
import type { RunPolicy } from "../src/sweep/types.js";
import { type LedgerBackend, useLedgerBackends } from "./helpers/postgres.js";

const NOW = 5_000_000;

// Every case runs on SQLite and on PostgreSQL (a server started for this file).
const backends = useLedgerBackends();
let backend: LedgerBackend;

async function ledgerWith(text: string): Promise<Db> {
  const { db } = await backend.open();
  await syncSweep(db, loadSweep([{ file: "/tmp/x/sweep.yaml", text }]), NOW);
  return db;
}

const GRID = `
command: python train.py --lr {lr}
retries: 3
backoff: 10s
grid:
  combinations:
    - lr: [1, 2, 3, 4, 5]
`;

const request = (overrides: Partial<ClaimRequest> = {}): ClaimRequest => ({
  worker: "w1",
  host: "host-a",
  now: NOW,
  leaseMs: 30_000,
  fits: () => ({ gpuIds: [] }),
  ...overrides,
});

async function claimAll(db: Db, overrides: Partial<ClaimRequest> = {}): Promise<Lease[]> {
  const claims: Lease[] = [];
  for (;;) {
    const claim = await claimTask(db, request(overrides));
    if (!claim) return claims;
    claims.push(claim);
    if (claims.length > 100) throw new Error("claimTask keeps handing out tasks");
  }
}

const fail = { kind: "failed", exitCode: 1, signal: null, error: "exit 1", wallSeconds: 1 } as const;

describe.each(backends)("on $name", (each) => {
  beforeEach(() => {
    backend = each;
  });

  describe("claimTask", () => {
    it("hands out the lowest id first, with the task's details and placements", async () => {
      const db = await ledgerWith(GRID);
      const claim = await claimTask(db, request({ fits: () => ({ gpuIds: [1, 3] }) }));
      expect(claim).toMatchObject({
        attemptNumber: 1,
        gpuIds: [1, 3],
        placements: [{ phase: "grid", outputDir: "/tmp/x/results/grid" }],
        task: {
          id: 1,
          params: { lr: 1 },
          command: "python train.py --lr 1",
          cwd: "/tmp/x",
          configFile: "/tmp/x/sweep.yaml",
          state: "running",
          attempts: 0,
          policy: { retries: 3, backoffMs: 10_000 },
        },
      });
      const attempt = await db.one("SELECT * FROM attempts WHERE id = $1", [claim?.attemptId]);
      expect(attempt).toMatchObject({
        task_id: 1,
        number: 1,
        worker: "w1",
        host: "host-a",
        gpu_ids: "1,3",
        started_at: NOW,
        lease_expires: NOW + 30_000,
        ended_at: null,
        outcome: null,
      });
      expect(await db.one("SELECT state, attempt_id FROM tasks WHERE id = 1")).toEqual({
        state: "running",
        attempt_id: claim?.attemptId,
      });
      expect(await db.one("SELECT kind, task_id FROM events WHERE kind = 'task_started'")).toEqual({
        kind: "task_started",
        task_id: 1,
      });
    });

    it("never hands out the same task twice: claim until null, all distinct, none left pending", async () => {
      const db = await ledgerWith(GRID);
      const claims = await claimAll(db);
      expect(claims.map((claim) => claim.task.id)).toEqual([1, 2, 3, 4, 5]);
      expect(new Set(claims.map((claim) => claim.attemptId)).size).toBe(5);
      expect(await taskCounts(db)).toMatchObject({ unique: 5, pending: 0, running: 5, blocked: 0 });
      expect(await db.one("SELECT count(*) AS n FROM tasks WHERE state = 'pending'")).toEqual({ n: 0 });
      expect(await claimTask(db, request())).toBeNull();
    });

    it("concurrent claims on one connection still hand out distinct tasks", async () => {
      const db = await ledgerWith(GRID);
      const claims = await Promise.all(
        Array.from({ length: 8 }, (_, index) => claimTask(db, request({ worker: `w${index}` }))),
      );
      const ids = claims.flatMap((claim) => (claim ? [claim.task.id] : []));
      expect(ids.sort()).toEqual([1, 2, 3, 4, 5]);
      expect(claims.filter((claim) => claim === null)).toHaveLength(3);
    });

    it("skips tasks whose backoff has not run out (not_before), and takes them when it has", async () => {
      const db = await ledgerWith(GRID);
      const first = await claimTask(db, request());
      const result = await finishAttempt(db, first?.attemptId as number, fail, NOW);
      expect(result.retryAt).toBe(NOW + 10_000);
      expect(await nextBackoffExpiry(db, NOW)).toBe(NOW + 10_000);
      // Task 1 waits for its backoff: the next claim is task 2.
      expect((await claimTask(db, request()))?.task.id).toBe(2);
      expect((await claimTask(db, request({ now: NOW + 9_999 })))?.task.id).toBe(3);
      const later = await claimTask(db, request({ now: NOW + 10_000 }));
      expect(later).toMatchObject({ task: { id: 1, attempts: 1 }, attemptNumber: 2 });
      expect(await nextBackoffExpiry(db, NOW)).toBeNull();
    });

    it("skips tasks that do not fit, and returns null when none does", async () => {
      const db = await ledgerWith(`
command: python train.py --lr {lr}
big:
  resources: {gpus: 2}
  combinations:
    - lr: [1, 2]
small:
  resources: {gpus: 0.5}
  combinations:
    - lr: [3]
`);
      const seen: Array<number | null> = [];
      const fitsSmall = (policy: RunPolicy) => {
        seen.push(policy.resources.gpus);
        return (policy.resources.gpus ?? 1) <= 1 ? { gpuIds: [0] } : null;
      };
      const claim = await claimTask(db, request({ fits: fitsSmall }));
      expect(claim?.task).toMatchObject({ id: 3, params: { lr: 3 } });
      expect(seen).toEqual([2, 2, 0.5]);
      expect(await claimTask(db, request({ fits: fitsSmall }))).toBeNull();
      expect(await claimTask(db, request({ fits: () => null }))).toBeNull();
      // Nothing was touched by the refusals.
      expect(await db.one("SELECT count(*) AS n FROM attempts")).toEqual({ n: 1 });
      expect(await taskCounts(db)).toMatchObject({ pending: 2, running: 1 });
    });

    it("numbers a task's attempts 1, 2, 3… across retries and interruptions", async () => {
      const db = await ledgerWith(`
command: python train.py --lr {lr}
retries: 5
backoff: 1s
one:
  combinations:
    - lr: [1]
`);
      const numbers: number[] = [];
      let now = NOW;
      for (const outcome of [fail, { kind: "interrupted", error: "stopped" } as const, fail]) {
        const claim = await claimTask(db, request({ now }));
        if (!claim) throw new Error("no claim");
        numbers.push(claim.attemptNumber);
        await finishAttempt(db, claim.attemptId, outcome, now);
        now += 60_000;
      }
      const last = await claimTask(db, request({ now }));
      numbers.push(last?.attemptNumber as number);
      expect(numbers).toEqual([1, 2, 3, 4]);
      expect(await db.all("SELECT number, outcome FROM attempts ORDER BY id")).toEqual([
        { number: 1, outcome: "failed" },
        { number: 2, outcome: "interrupted" },
        { number: 3, outcome: "failed" },
        { number: 4, outcome: null },
      ]);
      // Interruptions do not count against retries.
      expect(last?.task.attempts).toBe(2);
    });

    it("does not hand out tasks that are not runnable or no longer active", async () => {
      const db = await ledgerWith(`
command: python train.py --lr {lr}
first:
  combinations:
    - lr: [1]
second:
  after: [first]
  combinations:
    - lr: [2]
`);
      const edited = `
command: python train.py --lr {lr}
first:
  combinations:
    - lr: [3]
second:
  after: [first]
  combinations:
    - lr: [2]
`;
      await syncSweep(db, loadSweep([{ file: "/tmp/x/sweep.yaml", text: edited }]), NOW);
      // lr 1 was dropped, lr 2 waits for its gate: only lr 3 is claimable.
      expect((await claimAll(db)).map((claim) => claim.task.params.lr)).toEqual([3]);
    });
  });
});
