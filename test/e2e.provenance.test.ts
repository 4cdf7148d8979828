/**
 * End to end: each attempt records the git state of the code it ran, and each results row shows
 * its task's (git_commit, git_dirty, git_diff_sha256) — in a clean repository, a dirty one (the
 * hash follows the edit), and none outside git or without git installed, where the sweep runs as
 * before. An old results file without these columns resumes and gains them.
 * Run `npm run build` first: these tests run bin/labsweep.js, which runs dist/.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Database } from "../src/ledger/sqliteDriver.js";
import { runCli, tempDir, writeFile } from "./helpers/cli.js";
import { commitAll, diffHash, git } from "./helpers/gitRepo.js";
import { csvRecords } from "./helpers/resultsLedger.js";

const TRAIN = [
  "import json, os, sys",
  "json.dump({'acc': float(sys.argv[1])}, open(os.environ['LABSWEEP_RESULT_FILE'], 'w'))",
  "",
].join("\n");

/** A project: train.py, a sweep over x, results/ and the state dir ignored by git. */
function project(xs: number[]): string {
  const dir = tempDir();
  writeFile(dir, "train.py", TRAIN);
  writeFile(dir, ".gitignore", "results/\n.labsweep/\n");
  writeFile(
    dir,
    "sweep.yaml",
    ["command: python3 train.py {x}", "main:", "  combinations:", `    - x: [${xs.join(", ")}]`, ""].join(
      "\n",
    ),
  );
  return dir;
}

async function run(dir: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<void> {
  const result = await runCli(["run", join(dir, "sweep.yaml"), "--no-dashboard", ...args], { cwd: dir, env });
  expect(result.code, `labsweep exited ${result.code}:\n${result.stderr}`).toBe(0);
}

function rows(dir: string): Array<Record<string, string>> {
  return csvRecords(join(dir, "results", "main", "final_results.csv")).sort(
    (a, b) => Number(a.x) - Number(b.x),
  );
}

interface AttemptGit {
  git_commit: string | null;
  git_dirty: number | null;
  git_diff_sha256: string | null;
}

function attemptsOf(dir: string): AttemptGit[] {
  const db = new Database(join(dir, ".labsweep", "ledger.sqlite"), { readonly: true });
  try {
    return db
      .prepare("SELECT git_commit, git_dirty, git_diff_sha256 FROM attempts ORDER BY id")
      .all() as AttemptGit[];
  } finally {
    db.close();
  }
}

describe("provenance", () => {
  it("records the commit of a clean repository, not dirty, with no diff hash", async () => {
    const dir = project([1, 2]);
    const commit = commitAll(dir);
    await run(dir);
    for (const row of rows(dir))
      expect(row).toMatchObject({ git_commit: commit, git_dirty: "false", git_diff_sha256: "" });
    expect(attemptsOf(dir)).toEqual([
      { git_commit: commit, git_dirty: 0, git_diff_sha256: null },
      { git_commit: commit, git_dirty: 0, git_diff_sha256: null },
    ]);
  });

  it("marks a dirty tree and hashes its diff; another edit gives later tasks another hash", async () => {
    const dir = project([1]);
    const commit = commitAll(dir);
    writeFile(dir, "train.py", `${TRAIN}# first edit\n`);
    const first = diffHash(dir);
    await run(dir);
    writeFile(dir, "train.py", `${TRAIN}# second edit\n`);
    const second = diffHash(dir);
    expect(second).not.toBe(first);
    // x=1 is done; the --set adds x=2, which runs the second edit.
    await run(dir, ["--set", "x=1,2"]);
    const [one, two] = rows(dir);
    expect(one).toMatchObject({ x: "1", git_commit: commit, git_dirty: "true", git_diff_sha256: first });
    expect(two).toMatchObject({ x: "2", git_commit: commit, git_dirty: "true", git_diff_sha256: second });
    // An untracked file is not a change (as in `git describe --dirty`): results and notes beside the code.
    writeFile(dir, "notes.txt", "untracked\n");
    git(dir, "checkout", "--", "train.py");
    await run(dir, ["--set", "x=1,2,3"]);
    expect(rows(dir)[2]).toMatchObject({
      x: "3",
      git_commit: commit,
      git_dirty: "false",
      git_diff_sha256: "",
    });
  });

  it("leaves the columns out outside a git repository, and in one when git is not installed", async () => {
    const outside = project([1]);
    await run(outside);
    const header = Object.keys(rows(outside)[0] ?? {});
    expect(header).toContain("acc");
    expect(header).not.toContain("git_commit");
    expect(attemptsOf(outside)).toEqual([{ git_commit: null, git_dirty: null, git_diff_sha256: null }]);

    // A PATH with what the task and the launcher need, and no git.
    const repo = project([1]);
    commitAll(repo);
    const bin = join(tempDir(), "bin");
    mkdirSync(bin);
    symlinkSync(whichOf("sh"), join(bin, "sh"));
    symlinkSync(pythonExecutable(), join(bin, "python3"));
    await run(repo, [], { PATH: bin });
    expect(Object.keys(rows(repo)[0] ?? {})).not.toContain("git_commit");
  });

  it("resumes an old results file without the columns: its rows stay, new rows add the columns", async () => {
    const dir = project([1, 2]);
    const commit = commitAll(dir);
    const out = join(dir, "results", "main");
    mkdirSync(out, { recursive: true });
    // The original system's layout: parameters and metrics, no metadata.
    writeFile(out, "final_results.csv", "x,acc\n1,1.0\n");
    await run(dir);
    const text = readFileSync(join(out, "final_results.csv"), "utf8").split("\n");
    expect(text[0]).toBe(
      "x,acc,phase,wall_seconds,peak_rss_mb,gpu_util_mean,gpu_mem_peak_mb,energy_wh,attempts,host,gpu_ids,git_commit,git_dirty,git_diff_sha256",
    );
    const [one, two] = rows(dir);
    // Found complete, not run again: its cells as they were, the new columns blank.
    expect(one).toMatchObject({ x: "1", acc: "1.0", git_commit: "", git_dirty: "" });
    expect(two).toMatchObject({ x: "2", acc: "2", git_commit: commit, git_dirty: "false" });
    expect(attemptsOf(dir)).toHaveLength(1);
    // And the file as it now is resumes too: nothing is run or written twice.
    await run(dir);
    expect(rows(dir)).toHaveLength(2);
  });
});

/** The python3 interpreter itself (not a version manager's shim, which needs more than this PATH). */
function pythonExecutable(): string {
  return execFileSync("python3", ["-c", "import sys; print(sys.executable)"], { encoding: "utf8" }).trim();
}

/** Where a tool is on this machine's PATH. */
function whichOf(tool: string): string {
  return execFileSync("sh", ["-c", `command -v ${tool}`], { encoding: "utf8" }).trim();
}
