import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Coordinator, type ReportItem } from "../src/coordinator/coordinator.js";
import { type ClaimRequest, claimTask } from "../src/ledger/claimTask.js";
import { claimTasks } from "../src/ledger/claimTasks.js";
import type { Db } from "../src/ledger/db.js";
import { finishAttempt } from "../src/ledger/finishAttempt.js";
import { type FinishItem, finishAttempts } from "../src/ledger/finishAttempts.js";
import { syncSweep } from "../src/ledger/syncSweep.js";
import type { AttemptOutcome, Lease } from "../src/protocol/interfaces.js";
import { loadSweep } from "../src/sweep/loadSweep.js";
import { type LedgerBackend, useLedgerBackends } from "./helpers/postgres.js";

/**
 * The batch paths the coordinator takes for an agent's round trip (finishAttempts, claimTasks,
 * Coordinator.reportAndLease) against the one-at-a-time operations they must equal. On
 * PostgreSQL they are a few set-based statements whose decisions are made in memory, so a
 * mistake there would not show in the one-at-a-time tests.
 */
const NOW = 9_000_000;

const backends = useLedgerBackends();

const sweep = (text: string) => loadSweep([{ file: "/tmp/x/sweep.yaml", text }]);

// Tasks x=1..6 in phase a (out/a); 2 and 3 also in phase b, which shares out/a and has out/b.
const MIXED = `
command: run {x}
retries: 1
backoff: 2s
a:
  output_dir: out/a
  combinations:
    - x: [1, 2, 3, 4, 5, 6]
b:
  output_dir: out/b
  combinations:
    - x: [2, 3]
c:
  output_dir: out/a
  combinations:
    - x: [3]
`;

const request = (overrides: Partial<ClaimRequest> = {}): ClaimRequest => ({
  worker: "w",
  host: "host-a",
  now: NOW,
  leaseMs: 30_000,
  fits: () => ({ gpuIds: [0, 1] }),
  ...overrides,
});

async function claim(db: Db, overrides: Partial<ClaimRequest> = {}): Promise<Lease> {
  const claimed = await claimTask(db, request(overrides));
  if (!claimed) throw new Error("nothing to claim");
  return claimed;
}

// Each success ran dirty code of its own (a diff hash per loss); failures ran a clean commit.
const success = (loss: number): AttemptOutcome => ({
  kind: "succeeded",
  metrics: { loss },
  wallSeconds: 2.5,
  usage: { peak_rss_mb: 10, gpu_util_mean: null, gpu_mem_peak_mb: null, energy_wh: null, samples: 1 },
  git: { commit: "c".repeat(40), dirty: true, diffSha256: String(loss * 10).padStart(64, "0") },
});
const failure: AttemptOutcome = {
  kind: "failed",
  exitCode: 3,
  signal: null,
  error: "exit 3",
  wallSeconds: 1,
  git: { commit: "f".repeat(40), dirty: false, diffSha256: null },
};
const interrupted: AttemptOutcome = {
  kind: "interrupted",
  error: "stopped",
  exitCode: null,
  signal: "SIGTERM",
};

/**
 * A ledger where one batch of reports meets every rule of finishAttempt: a success (owing rows
 * to two dirs, one shared by phases), a retried failure, a final failure, an interruption, a
 * stale failure from a lost attempt, a late success from a lost attempt followed by the current
 * attempt's success, and reports repeated within the batch.
 */
async function mixedBatch(db: Db): Promise<FinishItem[]> {
  await syncSweep(db, sweep(MIXED), NOW);
  const claims: Lease[] = [];
  for (let i = 0; i < 6; i++) claims.push(await claim(db));
  const [t1, t2, t3, t4, t5, t6] = claims as [Lease, Lease, Lease, Lease, Lease, Lease];
  // Task 3 has spent its one retry; its second attempt fails for good in the batch.
  await finishAttempt(db, t3.attemptId, failure, NOW);
  const t3again = await claim(db, { now: NOW + 5_000 });
  // Tasks 5 and 6 lost their workers and run again elsewhere.
  await finishAttempt(db, t5.attemptId, { kind: "lost", error: "gone" }, NOW);
  await finishAttempt(db, t6.attemptId, { kind: "lost", error: "gone" }, NOW);
  const t5again = await claim(db, { worker: "w2" });
  const t6again = await claim(db, { worker: "w2" });
  return [
    { attemptId: t1.attemptId, outcome: success(0.1) },
    { attemptId: t2.attemptId, outcome: failure },
    { attemptId: t3again.attemptId, outcome: failure },
    { attemptId: t4.attemptId, outcome: interrupted },
    { attemptId: t5.attemptId, outcome: failure },
    { attemptId: t6.attemptId, outcome: success(0.6) },
    { attemptId: t6again.attemptId, outcome: success(0.7) },
    { attemptId: t1.attemptId, outcome: success(0.9) },
    { attemptId: t5again.attemptId, outcome: interrupted },
    // Ended within the batch: a resent report, now a success, must not count as a late one.
    { attemptId: t2.attemptId, outcome: success(0.2) },
  ];
}

/** Everything a finish may change, in a comparable form. */
async function snapshot(db: Db) {
  return {
    tasks: await db.all(
      `SELECT id, state, attempts, not_before, attempt_id, result_json, wall_seconds, host, gpu_ids,
              finished_at, origin, usage_json, git_commit, git_dirty, git_diff_sha256 FROM tasks ORDER BY id`,
    ),
    attempts: await db.all(
      `SELECT id, task_id, number, worker, ended_at, outcome, exit_code, signal, error,
              git_commit, git_dirty, git_diff_sha256 FROM attempts ORDER BY id`,
    ),
    events: await db.all("SELECT at, kind, task_id, detail FROM events ORDER BY id"),
    resultRows: await db.all("SELECT task_id, output_dir, phase, written FROM result_rows ORDER BY 1, 2"),
  };
}

describe.each(backends)("batches on $name", (backend: LedgerBackend) => {
  it("finishAttempts records a mixed batch exactly as finishAttempt does one report at a time", async () => {
    const one = (await backend.open()).db;
    const items = await mixedBatch(one);
    const sequential = [];
    for (const item of items)
      sequential.push(await finishAttempt(one, item.attemptId, item.outcome, NOW + 9));
    const batch = (await backend.open()).db;
    expect(await mixedBatch(batch)).toEqual(items);
    expect(await finishAttempts(batch, items, NOW + 9)).toEqual(sequential);
    expect(await snapshot(batch)).toEqual(await snapshot(one));
    // Spot checks that the scenario meets the rules it is meant to.
    expect(sequential.map((result) => result.taskState)).toEqual([
      "succeeded",
      "pending",
      "failed",
      "pending",
      "ignored",
      "succeeded",
      "ignored",
      "ignored",
      "pending",
      "ignored",
    ]);
    // Provenance: every attempt's as reported; a task's from the attempt whose success it recorded
    // (task 6's lost attempt's late success, 0.6, not the ignored 0.7; task 1's 0.1, not the resent 0.9).
    const { tasks, attempts } = await snapshot(batch);
    const gitOf = (row: unknown) => {
      const { git_commit, git_dirty, git_diff_sha256 } = row as Record<string, unknown>;
      return [git_commit, git_dirty, git_diff_sha256];
    };
    expect(tasks.map(gitOf)).toEqual([
      ["c".repeat(40), 1, "1".padStart(64, "0")],
      [null, null, null],
      [null, null, null],
      [null, null, null],
      [null, null, null],
      ["c".repeat(40), 1, "6".padStart(64, "0")],
    ]);
    expect(
      attempts.filter((row) => (row as { outcome: string }).outcome === "failed").map(gitOf),
    ).toContainEqual(["f".repeat(40), 0, null]);
    expect((await snapshot(batch)).resultRows).toEqual([
      { task_id: 1, output_dir: "/tmp/x/out/a", phase: "a", written: 0 },
      { task_id: 6, output_dir: "/tmp/x/out/a", phase: "a", written: 0 },
    ]);
  });

  it("finishAttempts refuses reports of unknown or other workers' attempts when told whose they are", async () => {
    const { db } = await backend.open();
    await syncSweep(db, sweep(MIXED), NOW);
    const mine = await claim(db);
    const theirs = await claim(db, { worker: "w2" });
    const results = await finishAttempts(
      db,
      [
        { attemptId: theirs.attemptId, outcome: success(1), worker: "w" },
        { attemptId: 999, outcome: success(1), worker: "w" },
        { attemptId: mine.attemptId, outcome: success(1), worker: "w" },
      ],
      NOW,
    );
    expect(results).toEqual([
      { refused: "foreign" },
      { refused: "unknown" },
      { taskState: "succeeded", finalFailure: false, retryAt: null },
    ]);
    const states = await db.all("SELECT id, state FROM tasks WHERE id IN (1, 2) ORDER BY id");
    expect(states).toEqual([
      { id: 1, state: "succeeded" },
      { id: 2, state: "running" },
    ]);
    // Without a worker an unknown attempt is an error, as for finishAttempt, and nothing is kept.
    await expect(finishAttempts(db, [{ attemptId: 999, outcome: failure }], NOW)).rejects.toThrow(
      /unknown attempt 999/,
    );
  });

  it("claimTasks hands out what claimTask would one at a time: attempts, placements, events", async () => {
    const one = (await backend.open()).db;
    const batch = (await backend.open()).db;
    for (const db of [one, batch]) {
      await syncSweep(db, sweep(MIXED), NOW);
      // Task 1 was interrupted twice, so its next attempt is number 3.
      await finishAttempt(db, (await claim(db)).attemptId, interrupted, NOW);
      await finishAttempt(db, (await claim(db)).attemptId, interrupted, NOW);
    }
    const sequential: Lease[] = [];
    for (let i = 0; i < 4; i++) sequential.push(await claim(one));
    const batched = await claimTasks(batch, request(), 4);
    expect(batched).toEqual(sequential);
    expect(batched.map((claimed) => [claimed.task.id, claimed.attemptNumber])).toEqual([
      [1, 3],
      [2, 1],
      [3, 1],
      [4, 1],
    ]);
    expect(batched[2]?.placements).toEqual([
      { phase: "a", outputDir: "/tmp/x/out/a" },
      { phase: "b", outputDir: "/tmp/x/out/b" },
      { phase: "c", outputDir: "/tmp/x/out/a" },
    ]);
    expect(await snapshot(batch)).toEqual(await snapshot(one));
  });

  it("claimTasks asks `fits` about candidates in order and takes each it places, up to max", async () => {
    const { db } = await backend.open();
    await syncSweep(db, sweep(MIXED), NOW);
    let room = 3;
    const asked: string[] = [];
    const claims = await claimTasks(
      db,
      request({
        fits: (policy) => {
          asked.push(JSON.stringify(policy.resources));
          if (room === 0) return null;
          room--;
          return { gpuIds: [] };
        },
      }),
      4,
    );
    expect(claims.map((claimed) => claimed.task.id)).toEqual([1, 2, 3]);
    // Four candidates read first; the fourth did not fit, so a further read looked at 5 and 6.
    expect(asked).toHaveLength(6);
    const pending = await db.all("SELECT id FROM tasks WHERE state = 'pending' ORDER BY id");
    expect(pending).toEqual([{ id: 4 }, { id: 5 }, { id: 6 }]);
  });
});

describe("batches on PostgreSQL replicas", () => {
  const postgres = backends.find((backend) => backend.name === "postgres") as LedgerBackend;
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it("runs keyed transactions with index-only, plan-once settings, and nothing else", async () => {
    const { db } = await postgres.open();
    const settings = (tx: Db) =>
      tx.one<{ scan: string; plans: string }>(
        "SELECT current_setting('enable_seqscan') AS scan, current_setting('plan_cache_mode') AS plans",
      );
    expect(await db.transaction(settings, { keyed: true })).toEqual({
      scan: "off",
      plans: "force_generic_plan",
    });
    expect(await db.transaction(settings)).toEqual({ scan: "on", plans: "auto" });
    expect(await settings(db)).toEqual({ scan: "on", plans: "auto" });
  });

  it("two coordinators reporting and leasing batches at once never hand out one task twice", async () => {
    const { db, store, stateDir } = await postgres.open();
    const dir = mkdtempSync(join(tmpdir(), "labsweep-batches-"));
    dirs.push(dir);
    const grid = Array.from({ length: 120 }, (_, i) => i);
    const text = `command: run {x}\nall:\n  output_dir: out\n  combinations:\n    - x: [${grid}]\n`;
    await syncSweep(db, loadSweep([{ file: join(dir, "sweep.yaml"), text }]), NOW);
    const other = await postgres.reopen(store, stateDir);
    const coordinators = [db, other].map(
      (ledger) => new Coordinator(ledger, { stateDir: dir, now: () => NOW }),
    );
    const capacity = { freeSlots: 4, freeCpus: Number.POSITIVE_INFINITY, hasGpus: false, gpus: [], tags: [] };
    const leased: number[] = [];
    // Eight agents, four per coordinator, each reporting what it holds as it asks for more.
    const agent = async (coordinator: Coordinator, worker: string) => {
      let held: Lease[] = [];
      for (;;) {
        const reports: ReportItem[] = held.map((claimed) => ({
          attemptId: claimed.attemptId,
          report: { outcome: success(claimed.task.id) },
          worker,
        }));
        const round = await coordinator.reportAndLease(reports, { worker, host: worker, capacity }, 4);
        expect(
          round.results.every((result) => "taskState" in result && result.taskState === "succeeded"),
        ).toBe(true);
        held = round.leases;
        leased.push(...held.map((claimed) => claimed.task.id));
        if (held.length === 0 && reports.length === 0) return;
      }
    };
    await Promise.all(
      Array.from({ length: 8 }, (_, i) => agent(coordinators[i % 2] as Coordinator, `agent-${i}`)),
    );
    for (const coordinator of coordinators) await coordinator.drainResults();
    expect([...leased].sort((a, b) => a - b)).toEqual(grid.map((x) => x + 1));
    const counts = await db.one<{ attempts: number; started: number; rows: number; succeeded: number }>(
      `SELECT (SELECT count(*) FROM attempts) AS attempts,
              (SELECT count(*) FROM events WHERE kind = 'task_started') AS started,
              (SELECT count(*) FROM result_rows) AS rows,
              (SELECT count(*) FROM tasks WHERE state = 'succeeded') AS succeeded`,
    );
    expect(counts).toEqual({ attempts: 120, started: 120, rows: 120, succeeded: 120 });
    // Both coordinators flushed results: each row is in the file once.
    const lines = readFileSync(join(dir, "out", "final_results.csv"), "utf8")
      .trim()
      .split("\n");
    expect(lines).toHaveLength(121);
    expect(new Set(lines).size).toBe(121);
  });
});

describe.each(backends)("gates after batched finishes on $name", (backend: LedgerBackend) => {
  const GATED = `
command: run {x}
a:
  output_dir: out
  combinations:
    - x: [1, 2, 3]
g:
  after: [a]
  output_dir: out
  combinations:
    - x: [10]
`;
  const capacity = { freeSlots: 4, freeCpus: Number.POSITIVE_INFINITY, hasGpus: false, gpus: [], tags: [] };

  async function finishOne(coordinator: Coordinator): Promise<void> {
    const [claimed] = await coordinator.leaseMany({ worker: "w", host: "h", capacity }, 1);
    if (!claimed) throw new Error("nothing to lease");
    await coordinator.finish(claimed.attemptId, { outcome: success(1) });
  }

  const phaseState = async (db: Db) =>
    (await db.one<{ state: string }>("SELECT state FROM phases WHERE name = 'g'"))?.state;

  /**
   * A sweep of phase a alone, one of its tasks finished (so finishes stop asking about waiting
   * phases for a while), and `addGated` to add gated phase g to it later.
   */
  async function withoutGateYet() {
    const { db, stateDir } = await backend.open();
    const file = join(stateDir, "sweep.yaml");
    await syncSweep(db, loadSweep([{ file, text: GATED.slice(0, GATED.indexOf("g:")) }]), NOW);
    const coordinator = new Coordinator(db, { stateDir, now: () => NOW });
    await finishOne(coordinator);
    const addGated = () => syncSweep(db, loadSweep([{ file, text: GATED }]), NOW);
    return { db, coordinator, addGated };
  }

  it("a phase added while none was waiting opens as soon as its dependency settles", async () => {
    const { db, coordinator, addGated } = await withoutGateYet();
    // Configs add a gated phase (as `labsweep add` does through the server).
    await addGated();
    coordinator.phasesChanged();
    await finishOne(coordinator);
    expect(await phaseState(db)).toBe("waiting");
    await finishOne(coordinator);
    expect(await phaseState(db)).toBe("open");
    await coordinator.drainResults();
  });

  it("a phase put back to waiting behind the coordinator's back opens once agents run out of work", async () => {
    const { db, coordinator, addGated } = await withoutGateYet();
    // Another process (or replica) syncs: this coordinator's finishes may not look for a while…
    await addGated();
    await finishOne(coordinator);
    await finishOne(coordinator);
    // …but an idle agent's isFinished always judges gates, so the phase's task is not stranded.
    expect(await coordinator.isFinished()).toBe(false);
    expect(await phaseState(db)).toBe("open");
    const [next] = await coordinator.leaseMany({ worker: "w", host: "h", capacity }, 1);
    expect(next?.task.params).toEqual({ x: 10 });
    await coordinator.finish(next?.attemptId as number, { outcome: success(1) });
    await coordinator.drainResults();
  });
});
