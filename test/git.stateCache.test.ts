/**
 * The agent's cache of git states (src/git/gitStateCache.ts) on a real repository, with git on
 * PATH wrapped so each of its processes is counted: many attempts cost one reading; a commit shows
 * at once; an edit to a tracked file shows once the reading is `recheckMs` old; no repository,
 * and no git at all, read as null.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readGitState, trackedFiles } from "../src/git/gitState.js";
import { GitStateCache } from "../src/git/gitStateCache.js";
import { tempDir, writeFile } from "./helpers/cli.js";
import { commitAll, diffHash, git } from "./helpers/gitRepo.js";

const realPath = process.env.PATH;
let calls: string;

beforeEach(() => {
  // A `git` first on PATH that logs each run, then runs the real one.
  const bin = join(tempDir(), "bin");
  mkdirSync(bin);
  calls = join(bin, "calls.log");
  const real = execFileSync("sh", ["-c", "command -v git"], { encoding: "utf8" }).trim();
  writeFileSync(join(bin, "git"), `#!/bin/sh\necho "$*" >> '${calls}'\nexec '${real}' "$@"\n`);
  chmodSync(join(bin, "git"), 0o755);
  writeFileSync(calls, "");
  process.env.PATH = `${bin}:${realPath}`;
});

afterEach(() => {
  process.env.PATH = realPath;
});

function gitRuns(): number {
  return readFileSync(calls, "utf8").split("\n").filter(Boolean).length;
}

function repo(): { dir: string; commit: string } {
  const dir = tempDir();
  writeFile(dir, "train.py", "print(1)\n");
  const commit = commitAll(dir);
  writeFileSync(calls, "");
  return { dir, commit };
}

describe("GitStateCache", () => {
  it("answers many attempts from one reading", async () => {
    const { dir, commit } = repo();
    const cache = new GitStateCache({ recheckMs: 60_000 });
    const states = await Promise.all(Array.from({ length: 50 }, () => cache.read(dir)));
    for (let i = 0; i < 200; i++) await cache.read(dir);
    expect(states[0]).toEqual({ commit, dirty: false, diffSha256: null });
    expect(await cache.read(dir)).toEqual(states[0]);
    // rev-parse and diff: one reading, for 251 attempts.
    expect(gitRuns()).toBe(2);
  });

  it("sees a commit at once, an edit once the reading is recheckMs old", async () => {
    const { dir, commit } = repo();
    let now = 0;
    const cache = new GitStateCache({ recheckMs: 1000, now: () => now });
    expect(await cache.read(dir)).toEqual({ commit, dirty: false, diffSha256: null });
    // An edit touches none of git's own files: the reading stands until it is a second old.
    writeFile(dir, "train.py", "print(2)\n");
    now = 500;
    expect((await cache.read(dir))?.dirty).toBe(false);
    now = 1000;
    expect(await cache.read(dir)).toEqual({ commit, dirty: true, diffSha256: diffHash(dir) });
    // A commit moves the branch's ref: seen at once, however young the reading.
    git(dir, "commit", "-q", "-am", "second");
    const second = git(dir, "rev-parse", "HEAD");
    now = 1001;
    expect(await cache.read(dir)).toEqual({ commit: second, dirty: false, diffSha256: null });
    // So does a checkout (HEAD itself changes), detached included.
    git(dir, "checkout", "-q", commit);
    now = 1002;
    expect((await cache.read(dir))?.commit).toBe(commit);
  });

  it("reads null outside a repository, in one without a commit, and without git", async () => {
    const cache = new GitStateCache();
    expect(await cache.read(tempDir())).toBeNull();
    const empty = tempDir();
    git(empty, "init", "-q");
    expect(await readGitState(empty)).toBeNull();
    const { dir } = repo();
    process.env.PATH = "/nonexistent";
    expect(await readGitState(dir)).toBeNull();
    expect(await trackedFiles(dir)).toBeNull();
    expect(await new GitStateCache().read(dir)).toBeNull();
  });

  it("lists tracked and untracked files that are not ignored, relative to the dir", async () => {
    const { dir } = repo();
    writeFile(dir, ".gitignore", "results/\n");
    mkdirSync(join(dir, "results"));
    writeFile(join(dir, "results"), "final_results.csv", "x\n");
    writeFile(dir, "new.py", "\n");
    mkdirSync(join(dir, "sub"));
    writeFile(join(dir, "sub"), "a.py", "\n");
    expect((await trackedFiles(dir))?.sort()).toEqual([".gitignore", "new.py", "sub/a.py", "train.py"]);
    expect(await trackedFiles(join(dir, "sub"))).toEqual(["a.py"]);
  });
});
