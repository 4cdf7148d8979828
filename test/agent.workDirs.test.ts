/** Work dirs are pooled: each attempt gets an empty private one, and files never pass between attempts. */
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { WorkDirs } from "../src/agent/workDirs.js";
import { tempDir } from "./helpers/cli.js";

describe("work dirs", () => {
  it("hands out a dir 0700, and takes it back emptied for the next attempt", async () => {
    const root = join(tempDir(), "work");
    const pool = new WorkDirs(root);
    const first = pool.take();
    pool.prepare(first);
    expect(statSync(first).mode & 0o777).toBe(0o700);
    mkdirSync(join(first, "sub"));
    writeFileSync(join(first, "sub", "model.pt"), "attempt 1");
    writeFileSync(join(first, ".hidden"), "attempt 1");
    const second = pool.take();
    expect(second).not.toBe(first);
    await pool.giveBack(first);
    const third = pool.take();
    expect(third).toBe(first);
    pool.prepare(third);
    expect(readdirSync(third)).toEqual([]);
  });

  it("pairs each dir with a config file of its own, under the config root, reused with the dir", async () => {
    const state = tempDir();
    const pool = new WorkDirs(join(state, "work"), join(state, "configs"));
    const first = pool.take();
    const second = pool.take();
    pool.prepare(first);
    expect(pool.configPath(first)).toBe(join(state, "configs", "1.json"));
    expect(pool.configPath(second)).not.toBe(pool.configPath(first));
    // The config root is made with the first dir, private, and holds no work dir.
    expect(statSync(join(state, "configs")).mode & 0o777).toBe(0o700);
    writeFileSync(pool.configPath(first), "{}");
    await pool.giveBack(first);
    const again = pool.take();
    expect(pool.configPath(again)).toBe(pool.configPath(first));
    expect(readdirSync(join(state, "work"))).toEqual(["1"]);
    // A new pool (a restarted agent) starts without the old one's configs.
    new WorkDirs(join(state, "work"), join(state, "configs"));
    expect(existsSync(join(state, "configs"))).toBe(false);
  });

  it("starts empty: what an earlier agent left under its root is removed", async () => {
    const root = join(tempDir(), "work");
    mkdirSync(join(root, "1"), { recursive: true });
    writeFileSync(join(root, "1", "stale.txt"), "an earlier incarnation's");
    const pool = new WorkDirs(root);
    expect(existsSync(root)).toBe(false);
    const dir = pool.take();
    pool.prepare(dir);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("never hands out again a dir it could not empty", async () => {
    const pool = new WorkDirs(join(tempDir(), "work"));
    const never = pool.take();
    await pool.giveBack(never);
    expect(pool.take()).not.toBe(never);
  });
});
