/**
 * A recorded success has exactly its own artifacts, whatever order uploads and reports arrive in
 * (issue 13, point 5: "a retry never mixes files of two attempts"). A success declares its files;
 * the finish records it only if each is stored as that attempt's own: (a) a late success whose
 * files a retry's upload superseded is ignored; (b) the current attempt's, superseded by a stale
 * attempt's upload, is an interruption (pending again, no retry spent). A recorded success removes
 * every other attempt's rows in its transaction, and an upload finishing after it is refused.
 * Every case on SQLite and PostgreSQL, through finishAttempt and the batched finishAttempts.
 */
import { join } from "node:path";
import { beforeEach, describe, expect, it } from "vitest";
import type { Db } from "../src/ledger/db.js";
import { evaluateGates } from "../src/ledger/evaluateGates.js";
import { type FinishResult, finishAttempt } from "../src/ledger/finishAttempt.js";
import { finishAttempts } from "../src/ledger/finishAttempts.js";
import { taskArtifacts } from "../src/ledger/reads/artifacts.js";
import { recordArtifact, supersedeArtifacts } from "../src/ledger/recordArtifact.js";
import { syncSweep } from "../src/ledger/syncSweep.js";
import type { DeclaredArtifact } from "../src/protocol/artifacts.js";
import type { AttemptOutcome, Lease } from "../src/protocol/interfaces.js";
import { loadSweep } from "../src/sweep/loadSweep.js";
import { claimOrThrow } from "./helpers/claims.js";
import { tempDir } from "./helpers/cli.js";
import { type LedgerBackend, useLedgerBackends } from "./helpers/postgres.js";

const NOW = 14_000_000;
const backends = useLedgerBackends();
const SUCCESS: AttemptOutcome = { kind: "succeeded", metrics: { loss: 1 }, wallSeconds: 1 };
const shaOf = (letter: string) => letter.repeat(64);

/** A one-task sweep with no retries: a report that spent one would fail the task. */
async function ledger(backend: LedgerBackend): Promise<Db> {
  const { db } = await backend.open();
  const root = tempDir();
  const text = `command: run {x}\nretries: 0\nmain:\n  output_dir: ${root}/out\n  combinations:\n    - x: [1]\n`;
  await syncSweep(db, loadSweep([{ file: join(root, "sweep.yaml"), text }]), NOW);
  await evaluateGates(db, NOW);
  return db;
}

const claim = (db: Db, worker: string): Promise<Lease> => claimOrThrow(db, { worker, now: NOW });

/** An upload as the store makes it: room first (supersedes other attempts' rows), then the row. */
async function upload(db: Db, lease: Lease, path: string, sha256: string): Promise<void> {
  const room = await supersedeArtifacts(db, lease.task.id, lease.attemptId);
  if ("refused" in room) throw new Error(room.refused);
  const row = { task_id: lease.task.id, attempt_id: lease.attemptId, path, size: 1, sha256, stored_at: NOW };
  expect(await recordArtifact(db, row)).toBeNull();
}

type Finish = (db: Db, attemptId: number, artifacts?: DeclaredArtifact[]) => Promise<FinishResult>;
const paths: Array<{ via: string; finish: Finish }> = [
  {
    via: "finishAttempt",
    finish: (db, attemptId, artifacts) => finishAttempt(db, attemptId, SUCCESS, NOW, artifacts),
  },
  {
    via: "finishAttempts",
    finish: async (db, attemptId, artifacts) =>
      (await finishAttempts(db, [{ attemptId, outcome: SUCCESS, artifacts }], NOW))[0] as FinishResult,
  },
];

async function taskRow(db: Db, id: number) {
  return db.one<{ state: string; attempts: number; result_json: string | null }>(
    "SELECT state, attempts, result_json FROM tasks WHERE id = $1",
    [id],
  );
}

async function attemptEnd(db: Db, id: number) {
  return db.one<{ outcome: string; error: string | null }>(
    "SELECT outcome, error FROM attempts WHERE id = $1",
    [id],
  );
}

async function stored(db: Db, taskId: number): Promise<Array<[string, number, string]>> {
  return (await taskArtifacts(db, taskId)).map((row) => [row.path, row.attempt_id, row.sha256]);
}

describe.each(backends)("on $name", (backend) => {
  describe.each(paths)("through $via", ({ finish }) => {
    let db: Db;
    beforeEach(async () => {
      db = await ledger(backend);
    });

    it("(a) a late success whose files a retry's upload superseded is ignored; the retry's success is recorded", async () => {
      const a = await claim(db, "agent-a");
      await upload(db, a, "f1", shaOf("a"));
      await upload(db, a, "f2", shaOf("a"));
      await finishAttempt(db, a.attemptId, { kind: "lost", error: "lease ran out" }, NOW);
      const b = await claim(db, "agent-b");
      await upload(db, b, "f1", shaOf("b"));
      // A's report arrives now: its files are no longer its own.
      const late = await finish(db, a.attemptId, [
        { path: "f1", sha256: shaOf("a") },
        { path: "f2", sha256: shaOf("a") },
      ]);
      expect(late.taskState).toBe("ignored");
      expect(await taskRow(db, a.task.id)).toMatchObject({ state: "running", result_json: null });
      expect(await attemptEnd(db, a.attemptId)).toEqual({
        outcome: "interrupted",
        error: expect.stringContaining(`its artifact "f1" was replaced by another attempt's upload`),
      });
      expect(await stored(db, a.task.id)).toEqual([["f1", b.attemptId, shaOf("b")]]);
      await upload(db, b, "f2", shaOf("b"));
      const done = await finish(db, b.attemptId, [
        { path: "f1", sha256: shaOf("b") },
        { path: "f2", sha256: shaOf("b") },
      ]);
      expect(done).toMatchObject({ taskState: "succeeded" });
      expect(done.discarded).toBeUndefined();
      expect(await stored(db, a.task.id)).toEqual([
        ["f1", b.attemptId, shaOf("b")],
        ["f2", b.attemptId, shaOf("b")],
      ]);
    });

    it("(b) the current attempt's success, its files superseded by a stale attempt's upload, requeues the task, no retry spent", async () => {
      const z = await claim(db, "agent-z");
      await finishAttempt(db, z.attemptId, { kind: "lost", error: "lease ran out" }, NOW);
      const a = await claim(db, "agent-a");
      await upload(db, a, "f1", shaOf("a"));
      await upload(db, a, "f2", shaOf("a"));
      // Z's agent did not hear it lost the task, and uploads just before A reports.
      await upload(db, z, "f1", shaOf("z"));
      const result = await finish(db, a.attemptId, [
        { path: "f1", sha256: shaOf("a") },
        { path: "f2", sha256: shaOf("a") },
      ]);
      expect(result).toMatchObject({ taskState: "pending", finalFailure: false });
      // retries: 0 — a spent retry would have failed the task.
      expect(await taskRow(db, a.task.id)).toMatchObject({
        state: "pending",
        attempts: 0,
        result_json: null,
      });
      expect((await attemptEnd(db, a.attemptId))?.outcome).toBe("interrupted");
      const events = await db.all<{ kind: string; detail: string }>(
        "SELECT kind, detail FROM events WHERE task_id = $1 AND kind = 'task_interrupted'",
        [a.task.id],
      );
      expect(events).toHaveLength(1);
      expect(JSON.parse(events[0]?.detail ?? "{}")).toEqual({
        attempt: a.attemptId,
        why: expect.stringMatching(
          /^it succeeded, but its artifact "f1" was replaced .*: its result is not recorded$/,
        ),
      });
      // Z's success names f2 too, which it never stored: ignored like any stale report.
      const stale = await finish(db, z.attemptId, [
        { path: "f1", sha256: shaOf("z") },
        { path: "f2", sha256: shaOf("z") },
      ]);
      expect(stale.taskState).toBe("ignored");
      expect((await attemptEnd(db, z.attemptId))?.outcome).toBe("interrupted");
      // The task runs again, cleanly: its next attempt's success has its own files only.
      const c = await claim(db, "agent-c");
      await upload(db, c, "f1", shaOf("c"));
      expect((await finish(db, c.attemptId, [{ path: "f1", sha256: shaOf("c") }])).taskState).toBe(
        "succeeded",
      );
      expect(await stored(db, c.task.id)).toEqual([["f1", c.attemptId, shaOf("c")]]);
    });

    it("a declared file stored with another SHA-256, or not stored at all, is no success", async () => {
      const a = await claim(db, "agent-a");
      await upload(db, a, "f1", shaOf("a"));
      const wrong = await finish(db, a.attemptId, [{ path: "f1", sha256: shaOf("x") }]);
      expect(wrong.taskState).toBe("pending");
      expect((await attemptEnd(db, a.attemptId))?.error).toContain(
        `its artifact "f1" is stored with another SHA-256`,
      );
      const b = await claim(db, "agent-b");
      const missing = await finish(db, b.attemptId, [{ path: "never.txt", sha256: shaOf("b") }]);
      expect(missing.taskState).toBe("pending");
      expect((await attemptEnd(db, b.attemptId))?.error).toContain(`its artifact "never.txt" is not stored`);
    });

    it("a recorded success removes other attempts' rows in its transaction and returns them; a later upload is refused", async () => {
      const z = await claim(db, "agent-z");
      await upload(db, z, "z.txt", shaOf("z"));
      await finishAttempt(db, z.attemptId, { kind: "lost", error: "lease ran out" }, NOW);
      const a = await claim(db, "agent-a");
      // A report without a list (an agent from before it, or no files) declares nothing.
      const result = await finish(db, a.attemptId);
      expect(result.taskState).toBe("succeeded");
      expect(result.discarded).toEqual([
        expect.objectContaining({ task_id: a.task.id, attempt_id: z.attemptId, path: "z.txt" }),
      ]);
      expect(await stored(db, a.task.id)).toEqual([]);
      // Z's upload that had made room before the success, recording its row after it: refused.
      const row = {
        task_id: z.task.id,
        attempt_id: z.attemptId,
        path: "late.txt",
        size: 1,
        sha256: shaOf("z"),
        stored_at: NOW,
      };
      expect(await recordArtifact(db, row)).toEqual({
        refused: expect.stringMatching(/attempt 2 of task \d+ succeeded/),
      });
      expect(await stored(db, a.task.id)).toEqual([]);
    });
  });
});
