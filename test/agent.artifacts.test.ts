/**
 * The agent's side of artifacts: which files of a work dir are collected (globs, regular files
 * only, never through a symlink, the per-attempt limit), and the outbox keeping a success's files
 * beside its report (moved in before the report is written, never carried by a lease, deleted
 * once the report is sent, left-overs of a dead agent removed at start). Real files, a real
 * Outbox with a delivery function standing in for the network.
 */
import { execFileSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { collectArtifacts, reportWithArtifacts } from "../src/agent/artifacts.js";
import { Outbox, type OutboxRecord } from "../src/agent/outbox.js";
import { WorkDirs } from "../src/agent/workDirs.js";
import { MAX_ARTIFACT_FILES } from "../src/protocol/artifacts.js";
import type { AttemptOutcome, Lease } from "../src/protocol/interfaces.js";
import { REPO_ROOT, tempDir } from "./helpers/cli.js";

function workDir(): string {
  const dir = join(tempDir(), "attempt-1.work");
  mkdirSync(join(dir, "plots", "sub"), { recursive: true });
  writeFileSync(join(dir, "a.txt"), "a");
  writeFileSync(join(dir, ".hidden.txt"), "h");
  writeFileSync(join(dir, "plots", "p.png"), "png");
  writeFileSync(join(dir, "plots", "sub", "q.csv"), "q");
  writeFileSync(join(dir, "model.bin"), "m");
  const outside = join(tempDir(), "secret");
  mkdirSync(outside);
  writeFileSync(join(outside, "key.txt"), "secret");
  symlinkSync(join(outside, "key.txt"), join(dir, "link.txt"));
  symlinkSync(outside, join(dir, "plots", "escape"));
  return dir;
}

const SHA_OF_A = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";

describe("collectArtifacts", () => {
  it("takes the regular files the globs match, hashed; never a symlink nor a dir through one", async () => {
    const dir = workDir();
    const collected = await collectArtifacts(dir, { artifacts: ["*.txt", "plots/**"] });
    expect(collected).not.toBeNull();
    if (!collected || "error" in collected) throw new Error(JSON.stringify(collected));
    expect(collected.files.map((file) => file.path)).toEqual(["a.txt", "plots/p.png", "plots/sub/q.csv"]);
    expect(collected.files[0]).toEqual({ path: "a.txt", size: 1, sha256: SHA_OF_A });
  });

  it("no globs collect nothing; over artifact_limit_mb together is an error naming the key", async () => {
    const dir = workDir();
    expect(await collectArtifacts(dir, { artifacts: [] })).toBeNull();
    expect(await collectArtifacts(dir, {})).toBeNull();
    const over = await collectArtifacts(dir, { artifacts: ["**"], artifactLimitMb: 4 / (1024 * 1024) });
    expect(over).toEqual({
      error: expect.stringMatching(/artifacts are over 4 bytes \(artifact_limit_mb: /),
    });
  });

  it("more files than a finish report may list is an error saying so; exactly the most is fine", async () => {
    const dir = tempDir();
    for (let i = 0; i < MAX_ARTIFACT_FILES; i++) writeFileSync(join(dir, `f${i}.txt`), "");
    const most = await collectArtifacts(dir, { artifacts: ["*.txt"] });
    expect(most && "files" in most ? most.files.length : most).toBe(MAX_ARTIFACT_FILES);
    writeFileSync(join(dir, "one-more.txt"), "");
    expect(await collectArtifacts(dir, { artifacts: ["*.txt"] })).toEqual({
      error: `more than ${MAX_ARTIFACT_FILES} artifacts match its artifacts: globs: collect fewer files (an archive of a dir counts as one)`,
    });
  });

  it("a success whose artifacts cannot be taken is reported failed; the work dir goes either way", async () => {
    const work = workDir();
    const ends: Array<{ outcome: AttemptOutcome }> = [];
    const success: AttemptOutcome = { kind: "succeeded", metrics: {}, wallSeconds: 2 };
    const lease = {
      attemptId: 5,
      attemptNumber: 1,
      task: { id: 3, policy: { artifacts: ["**"], artifactLimitMb: 1e-9 } },
    } as unknown as Lease;
    const pool = new WorkDirs(join(tempDir(), "work"));
    const dir = pool.take();
    pool.prepare(dir);
    cpSync(work, dir, { recursive: true, verbatimSymlinks: true });
    const port = { finish: async (_attemptId: number, end: { outcome: AttemptOutcome }) => ends.push(end) };
    const reported = await reportWithArtifacts(port, lease, { outcome: success }, dir);
    expect(reported).toMatchObject({ kind: "failed", error: expect.stringMatching(/artifact_limit_mb/) });
    expect(ends[0]?.outcome.kind).toBe("failed");
    await pool.giveBack(dir);
    expect(readdirSync(dir)).toEqual([]);
  });
});

function record(attemptId: number): OutboxRecord {
  const outcome: AttemptOutcome = { kind: "succeeded", metrics: {}, wallSeconds: 2 };
  return { attemptId, request: { agentId: "agent-1", outcome } };
}

describe("the outbox and artifacts", () => {
  it("moves a success's files in before its report, never lets a lease carry it, and deletes them once sent", async () => {
    const dir = join(tempDir(), "outbox");
    const work = workDir();
    const collected = await collectArtifacts(work, { artifacts: ["*.txt", "plots/**"] });
    if (!collected || "error" in collected) throw new Error("nothing collected");
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const seen: Array<{ files: string[]; inOutbox: string }> = [];
    const outbox = new Outbox(dir, async (item) => {
      if (item.artifacts)
        seen.push({
          files: item.artifacts.map((file) => file.path),
          inOutbox: readFileSync(join(dir, "artifacts", String(item.attemptId), "plots", "p.png"), "utf8"),
        });
      await gate;
      return "sent";
    });
    // The sender holds report 6 (at the gate) while 7, with artifacts, and 8 wait.
    await outbox.put(record(6));
    await outbox.put(record(7), { artifacts: collected });
    await outbox.put(record(8));
    // Moved, not copied: the work dir can go, and the next attempt never sees them.
    expect(existsSync(join(work, "a.txt"))).toBe(false);
    expect(outbox.carry(10).map((item) => item.attemptId)).toEqual([8]);
    outbox.release([8]);
    release();
    const flushed = await outbox.flush({ timeoutMs: 5000 });
    expect(outbox.error).toBeNull();
    expect(flushed).toBe(true);
    await outbox.close();
    expect(seen[0]).toEqual({ files: ["a.txt", "plots/p.png", "plots/sub/q.csv"], inOutbox: "png" });
    expect(readdirSync(join(dir, "artifacts"))).toEqual([]);
  });

  it("removes artifacts no report will send (an agent that died between moving them and its report)", async () => {
    const dir = join(tempDir(), "outbox");
    mkdirSync(join(dir, "artifacts", "5"), { recursive: true });
    mkdirSync(join(dir, "artifacts", "6"), { recursive: true });
    writeFileSync(join(dir, "artifacts", "6", "kept.txt"), "k");
    writeFileSync(join(dir, "6.json"), `${JSON.stringify({ ...record(6), artifacts: [] })}\n`);
    const outbox = new Outbox(dir, async () => {
      throw new Error("not sending in this test");
    });
    await outbox.close();
    expect(readdirSync(join(dir, "artifacts"))).toEqual(["6"]);
  });
});

describe("labsweep.work_dir() in Python", () => {
  it("is $LABSWEEP_WORK_DIR under labsweep and the current dir when run by hand", () => {
    const script = "import labsweep; print(labsweep.work_dir())";
    const env: NodeJS.ProcessEnv = { ...process.env, PYTHONPATH: join(REPO_ROOT, "python") };
    delete env.LABSWEEP_WORK_DIR;
    const run = (extra: NodeJS.ProcessEnv) =>
      execFileSync("python3", ["-c", script], { env: { ...env, ...extra }, encoding: "utf8" }).trim();
    expect(run({})).toBe(".");
    expect(run({ LABSWEEP_WORK_DIR: "/tmp/x/attempt-2.work" })).toBe("/tmp/x/attempt-2.work");
  });
});
