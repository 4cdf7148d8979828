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
