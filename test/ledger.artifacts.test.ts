/**
 * The artifacts table on SQLite and PostgreSQL: recording (a resend replaces), one attempt's
 * files per task (a later attempt supersedes an earlier one's; none may replace a succeeded
 * attempt's), the reads the routes use, and verifyArtifacts against real files.
 */
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Db } from "../src/ledger/db.js";
import { evaluateGates } from "../src/ledger/evaluateGates.js";
import { finishAttempt } from "../src/ledger/finishAttempt.js";
import { artifactTarget, taskArtifact, taskArtifacts } from "../src/ledger/reads/artifacts.js";
import { recordArtifact, supersedeArtifacts } from "../src/ledger/recordArtifact.js";
import { syncSweep } from "../src/ledger/syncSweep.js";
import { artifactDir } from "../src/protocol/artifacts.js";
import type { Lease } from "../src/protocol/interfaces.js";
import { verifyArtifacts } from "../src/results/verifyArtifacts.js";
import { loadSweep } from "../src/sweep/loadSweep.js";
import { claimOrThrow } from "./helpers/claims.js";
import { type LedgerBackend, useLedgerBackends } from "./helpers/postgres.js";

const NOW = 13_000_000;
const backends = useLedgerBackends();
let backend: LedgerBackend;
let root: string;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "labsweep-artifacts-"));
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

async function ledger(): Promise<Db> {
  const { db } = await backend.open();
  const text = `command: run {x}\nretries: 2\na:\n  output_dir: ${root}/out1\n  combinations:\n    - x: [1]\nb:\n  output_dir: ${root}/out2\n  combinations:\n    - x: [1]\n`;
  await syncSweep(db, loadSweep([{ file: join(root, "sweep.yaml"), text }]), NOW);
  await evaluateGates(db, NOW);
  return db;
}

const claim = (db: Db, worker = "agent-1"): Promise<Lease> => claimOrThrow(db, { worker, now: NOW });

function row(lease: Lease, path: string, sha256 = "a".repeat(64), size = 3) {
  return { task_id: lease.task.id, attempt_id: lease.attemptId, path, size, sha256, stored_at: NOW };
}

describe.each(backends)("on $name", (each) => {
  beforeEach(() => {
    backend = each;
  });

  it("records an artifact once per path; a resend replaces it; the target names the task's output dirs", async () => {
    const db = await ledger();
    const lease = await claim(db);
    expect(await artifactTarget(db, lease.attemptId)).toEqual({
      attemptId: lease.attemptId,
      taskId: lease.task.id,
      worker: "agent-1",
      signature: lease.task.signature,
      outputDirs: [join(root, "out1"), join(root, "out2")],
    });
    expect(await artifactTarget(db, 999_999)).toBeUndefined();
    await recordArtifact(db, row(lease, "b.txt"));
    await recordArtifact(db, row(lease, "a/x.bin"));
    await recordArtifact(db, row(lease, "b.txt", "b".repeat(64), 5));
    expect((await taskArtifacts(db, lease.task.id)).map((r) => [r.path, r.size, r.sha256])).toEqual([
      ["a/x.bin", 3, "a".repeat(64)],
      ["b.txt", 5, "b".repeat(64)],
    ]);
    expect((await taskArtifact(db, lease.task.id, "b.txt"))?.size).toBe(5);
    expect(await taskArtifact(db, lease.task.id, "nope")).toBeUndefined();
  });

  it("a later attempt supersedes an earlier one's files; nothing replaces a succeeded attempt's", async () => {
    const db = await ledger();
    const first = await claim(db);
    await recordArtifact(db, row(first, "old.txt"));
    // The first attempt is lost (its agent died mid-upload); the task runs again.
    await finishAttempt(db, first.attemptId, { kind: "lost", error: "gone" }, NOW);
    const second = await claim(db, "agent-2");
    expect(await supersedeArtifacts(db, second.task.id, second.attemptId)).toEqual({
      superseded: [expect.objectContaining({ path: "old.txt", attempt_id: first.attemptId })],
    });
    await recordArtifact(db, row(second, "new.txt"));
    expect((await taskArtifacts(db, second.task.id)).map((r) => r.path)).toEqual(["new.txt"]);
    // The same attempt again: nothing to supersede.
    expect(await supersedeArtifacts(db, second.task.id, second.attemptId)).toEqual({ superseded: [] });
    await finishAttempt(db, second.attemptId, { kind: "succeeded", metrics: {}, wallSeconds: 1 }, NOW);
    // The first attempt's late upload may not replace the files of the success.
    const late = await supersedeArtifacts(db, first.task.id, first.attemptId);
    expect(late).toEqual({ refused: expect.stringMatching(/attempt 2 of task \d+ succeeded/) });
    expect((await taskArtifacts(db, second.task.id)).map((r) => r.path)).toEqual(["new.txt"]);
  });

  it("verifyArtifacts finds missing, truncated and corrupted files in each output dir", async () => {
    const db = await ledger();
    const lease = await claim(db);
    const good = "abc";
    const sha = (text: string) => createHashHex(text);
    await recordArtifact(db, row(lease, "good.txt", sha(good), 3));
    await recordArtifact(db, row(lease, "plots/bad.txt", sha(good), 3));
    for (const out of ["out1", "out2"]) {
      const dir = artifactDir(join(root, out), lease.task.signature);
      mkdirSync(join(dir, "plots"), { recursive: true });
      writeFileSync(join(dir, "good.txt"), good);
    }
    writeFileSync(join(artifactDir(join(root, "out1"), lease.task.signature), "plots", "bad.txt"), "abd");
    writeFileSync(join(artifactDir(join(root, "out2"), lease.task.signature), "plots", "bad.txt"), "ab");
    await recordArtifact(db, row(lease, "gone.txt", sha(good), 3));
    const problems = await verifyArtifacts(db);
    const seen = problems.map((p) => [p.path, p.file.includes("/out1/") ? "out1" : "out2", p.problem]);
    expect(seen).toEqual([
      ["gone.txt", "out1", "missing"],
      ["gone.txt", "out2", "missing"],
      ["plots/bad.txt", "out1", "sha256"],
      ["plots/bad.txt", "out2", "size"],
    ]);
    expect(problems[3]?.detail).toBe("size 2 bytes, the ledger says 3");
  });
});

function createHashHex(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}
