/**
 * Host-wide GPU locks: two agents on one machine never share a GPU. Lock files are keyed by GPU
 * UUID and hold the owner's pid; a dead owner's lock is taken over. The race tests run real
 * processes against dist/ (run `npm run build` first).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { lockGpus, takePidLock } from "../src/agent/gpuLocks.js";
import type { GpuInfo } from "../src/agent/gpuProbe.js";
import { REPO_ROOT, tempDir } from "./helpers/cli.js";

function gpu(index: number, uuid = `GPU-test-${index}-${process.pid}`): GpuInfo {
  return {
    index,
    uuid,
    name: "Fake GPU",
    memoryTotalMiB: 24576,
    memoryFreeMiB: 24576,
    memoryUsedMiB: 0,
    utilizationPercent: 0,
    powerW: 50,
    driverVersion: "550.54.15",
  };
}

/** The pid of a process that has exited (and been reaped): a dead owner. */
async function deadPid(): Promise<number> {
  const child = spawn("true");
  await new Promise((resolve) => child.once("exit", resolve));
  return child.pid as number;
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
}

const LOCKS_MODULE = join(REPO_ROOT, "dist", "agent", "gpuLocks.js");

/**
 * A process that waits until `startAt` (so racers start together), tries to lock `uuid`, prints
 * what it got, holds the lock for `holdMs`, and exits (releasing it).
 */
/**
 * Two processes race for one GPU lock, starting together at `startAt`. Each prints what it got
 * and keeps its lock until both have answered (the test then closes their stdin), so a racer
 * slowed down by a busy machine can never find the lock already released by the other.
 */
async function raceTwo(
  dir: string,
  uuid: string,
  startAt: number,
): Promise<Array<{ pid: number; got: string }>> {
  const script = `
    const { lockGpus } = await import(${JSON.stringify(LOCKS_MODULE)});
    while (Date.now() < ${startAt}) {}
    const gpu = { index: 0, uuid: ${JSON.stringify(uuid)}, name: "x", memoryTotalMiB: 1, memoryFreeMiB: 1, memoryUsedMiB: 0, utilizationPercent: null, powerW: null, driverVersion: null };
    const result = lockGpus([gpu], { dir: ${JSON.stringify(dir)} });
    process.stdout.write(result.locked.length === 1 ? "locked" : "busy:" + result.busy[0].owner);
    process.stdin.resume();
    process.stdin.on("end", () => process.exit(0));
  `;
  const racers = [0, 1].map(() => {
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    const racer = { child, out: "" };
    child.stdout?.on("data", (chunk: Buffer) => {
      racer.out += chunk.toString();
    });
    return racer;
  });
  const deadline = Date.now() + 30_000;
  while (racers.some((racer) => racer.out === "") && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  for (const racer of racers) racer.child.stdin?.end();
  await Promise.all(racers.map((racer) => exited(racer.child)));
  return racers.map((racer) => ({ pid: racer.child.pid as number, got: racer.out }));
}

describe("GPU locks in one process", () => {
  it("locks GPUs by UUID with the owner's pid and releases them", () => {
    const dir = tempDir();
    const gpus = [gpu(0), gpu(1)];
    const result = lockGpus(gpus, { dir });
    expect(result.locked.map((g) => g.index)).toEqual([0, 1]);
    expect(result.busy).toEqual([]);
    for (const g of gpus)
      expect(readFileSync(join(dir, `${g.uuid}.lock`), "utf8").trim()).toBe(String(process.pid));
    result.release();
    expect(readdirSync(dir)).toEqual([]);
  });

  it("takes only as many GPUs as wanted, in order", () => {
    const dir = tempDir();
    const result = lockGpus([gpu(0), gpu(1), gpu(2)], { dir, want: 2 });
    expect(result.locked.map((g) => g.index)).toEqual([0, 1]);
    result.release();
  });

  it("takes over a lock whose owner is dead", async () => {
    const dir = tempDir();
    const g = gpu(0);
    const dead = await deadPid();
    writeFileSync(join(dir, `${g.uuid}.lock`), `${dead}\n`);
    const result = lockGpus([g], { dir });
    expect(result.locked).toHaveLength(1);
    expect(readFileSync(join(dir, `${g.uuid}.lock`), "utf8").trim()).toBe(String(process.pid));
    result.release();
  });

  it("treats an unreadable lock as stale", () => {
    const dir = tempDir();
    const g = gpu(0);
    writeFileSync(join(dir, `${g.uuid}.lock`), "garbage");
    expect(lockGpus([g], { dir }).locked).toHaveLength(1);
  });

  it("skips a GPU a live process holds and names the owner", async () => {
    const dir = tempDir();
    const holder = spawn("sleep", ["30"]);
    try {
      const g0 = gpu(0);
      writeFileSync(join(dir, `${g0.uuid}.lock`), `${holder.pid}\n`);
      const result = lockGpus([g0, gpu(1)], { dir });
      expect(result.locked.map((g) => g.index)).toEqual([1]);
      expect(result.busy).toEqual([{ gpu: g0, owner: holder.pid }]);
      result.release();
      // Releasing never removes a lock that is not ours.
      expect(existsSync(join(dir, `${g0.uuid}.lock`))).toBe(true);
    } finally {
      holder.kill("SIGKILL");
      await exited(holder);
    }
  });

  it("does not remove a lock another process took over after us", () => {
    const dir = tempDir();
    const path = join(dir, "x.lock");
    const attempt = takePidLock(path);
    if (!("held" in attempt)) throw new Error("expected the lock");
    writeFileSync(path, "1\n"); // pid 1 (init) took it over
    attempt.held.release();
    expect(readFileSync(path, "utf8")).toBe("1\n");
  });
});

describe("GPU locks across processes", () => {
  it("two processes racing for one GPU: exactly one gets it, the other names it", async () => {
    const dir = tempDir();
    for (let round = 0; round < 5; round++) {
      const uuid = `GPU-race-${round}`;
      const startAt = Date.now() + 600;
      const results = await raceTwo(dir, uuid, startAt);
      const winners = results.filter((result) => result.got === "locked");
      expect(winners, JSON.stringify(results)).toHaveLength(1);
      const loser = results.find((result) => result.got !== "locked");
      expect(loser?.got).toBe(`busy:${winners[0]?.pid}`);
      expect(existsSync(join(dir, `${uuid}.lock`))).toBe(false); // released at exit
    }
  });

  it("two processes racing for one stale lock: exactly one takes it over", async () => {
    const dir = tempDir();
    const dead = await deadPid();
    for (let round = 0; round < 5; round++) {
      const uuid = `GPU-stale-${round}`;
      writeFileSync(join(dir, `${uuid}.lock`), `${dead}\n`);
      const startAt = Date.now() + 600;
      const results = await raceTwo(dir, uuid, startAt);
      expect(
        results.filter((result) => result.got === "locked"),
        JSON.stringify(results),
      ).toHaveLength(1);
    }
  });

  it("a process killed with SIGKILL leaves a stale lock the next one takes", async () => {
    const dir = tempDir();
    const uuid = "GPU-killed";
    const script = `
      const { lockGpus } = await import(${JSON.stringify(LOCKS_MODULE)});
      lockGpus([{ index: 0, uuid: ${JSON.stringify(uuid)} }], { dir: ${JSON.stringify(dir)} });
      process.stdout.write("locked");
      setTimeout(() => {}, 60000);
    `;
    const holder = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    await new Promise((resolve) => holder.stdout?.once("data", resolve));
    expect(lockGpus([gpu(0, uuid)], { dir }).locked).toHaveLength(0);
    holder.kill("SIGKILL");
    await exited(holder);
    expect(readFileSync(join(dir, `${uuid}.lock`), "utf8").trim()).toBe(String(holder.pid));
    const result = lockGpus([gpu(0, uuid)], { dir });
    expect(result.locked).toHaveLength(1);
    result.release();
  });
});
