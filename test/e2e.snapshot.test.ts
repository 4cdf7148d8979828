/**
 * End to end: a snapshot sweep whose source file is edited mid-sweep. `snapshot: true` copies the
 * config's dir when the sweep is created and tasks run from the copy: tasks that start after the
 * edit still run the old code, a restart keeps the copy, and `run --refresh-snapshot` takes a new
 * one that later tasks run. The rows' provenance is the copy's. Output dirs stay in the config's dir.
 * Run `npm run build` first: these tests run bin/labsweep.js, which runs dist/.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runCli, startCli, tempDir, watch, writeFile } from "./helpers/cli.js";
import { commitAll, diffHash } from "./helpers/gitRepo.js";
import { csvRecords } from "./helpers/resultsLedger.js";

/** train.py reports model.py's VERSION; task x=1 waits for `<markers>/go` once it has started. */
function project(markers: string, snapshot = true): string {
  const dir = tempDir();
  writeFile(dir, "model.py", "VERSION = 1\n");
  writeFile(
    dir,
    "train.py",
    [
      "import json, os, sys, time",
      "from model import VERSION",
      "x, markers = int(sys.argv[1]), sys.argv[2]",
      "if x == 1:",
      "    open(os.path.join(markers, 'started'), 'w').close()",
      "    while not os.path.exists(os.path.join(markers, 'go')):",
      "        time.sleep(0.02)",
      "json.dump({'version': VERSION, 'cwd': os.getcwd()}, open(os.environ['LABSWEEP_RESULT_FILE'], 'w'))",
      "",
    ].join("\n"),
  );
  writeFile(dir, ".gitignore", "results/\n.labsweep/\n");
  writeFile(
    dir,
    "sweep.yaml",
    [
      `command: python3 train.py {x} ${JSON.stringify(markers)}`,
      `snapshot: ${snapshot}`,
      "main:",
      "  combinations:",
      "    - x: [1, 2, 3]",
      "",
    ].join("\n"),
  );
  return dir;
}

function rows(dir: string): Array<Record<string, string>> {
  return csvRecords(join(dir, "results", "main", "final_results.csv")).sort(
    (a, b) => Number(a.x) - Number(b.x),
  );
}

async function run(dir: string, args: string[]): Promise<string> {
  const result = await runCli(["run", join(dir, "sweep.yaml"), "--no-dashboard", "--slots", "1", ...args], {
    cwd: dir,
  });
  expect(result.code, `labsweep exited ${result.code}:\n${result.stderr}`).toBe(0);
  return result.stderr;
}

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("snapshot: true", () => {
  it("runs tasks from a copy: an edit mid-sweep changes nothing until --refresh-snapshot", async () => {
    const markers = tempDir();
    const dir = project(markers);
    const commit = commitAll(dir);
    const snapshots = join(dir, ".labsweep", "snapshots");

    // One slot: x=1 runs first and holds the sweep until the test has edited the code.
    const first = watch(
      startCli(["run", join(dir, "sweep.yaml"), "--no-dashboard", "--slots", "1"], { cwd: dir }),
    );
    await until(() => existsSync(join(markers, "started")), "task x=1 to start");
    writeFile(dir, "model.py", "VERSION = 2\n");
    writeFileSync(join(markers, "go"), "");
    const ended = await first.result;
    expect(ended.code, first.output()).toBe(0);
    expect(first.output()).toMatch(
      /snapshot of .* \(\d+ files, commit [0-9a-f]{12}\) in .*snapshots\/1: tasks run from it/,
    );
    // x=2 and x=3 started after the edit and still ran the old code, from the copy.
    const copy = join(snapshots, "1");
    expect(rows(dir).map((row) => [row.x, row.version, row.cwd])).toEqual([
      ["1", "1", copy],
      ["2", "1", copy],
      ["3", "1", copy],
    ]);
    // Their provenance is the copy's: the clean commit it was taken at, not the edited tree.
    for (const row of rows(dir))
      expect(row).toMatchObject({ git_commit: commit, git_dirty: "false", git_diff_sha256: "" });
    // Git's files only: the output dirs and the state dir stay out of the copy.
    expect(readdirSync(copy).sort()).toEqual([".gitignore", "model.py", "sweep.yaml", "train.py"]);

    // A restart keeps the copy: a task added now runs the old code too.
    const restarted = await run(dir, ["--set", "x=1,2,3,4"]);
    expect(restarted).not.toMatch(/snapshot of/);
    expect(rows(dir)[3]).toMatchObject({ x: "4", version: "1", cwd: copy });

    // --refresh-snapshot: a new copy, of the edited tree, which the next task runs; the old one goes.
    const refreshed = await run(dir, ["--set", "x=1,2,3,4,5", "--refresh-snapshot"]);
    expect(refreshed).toMatch(/snapshot of .* with uncommitted changes\) in .*snapshots\/2/);
    expect(rows(dir)[4]).toMatchObject({
      x: "5",
      version: "2",
      cwd: join(snapshots, "2"),
      git_commit: commit,
      git_dirty: "true",
      git_diff_sha256: diffHash(dir),
    });
    expect(readdirSync(snapshots)).toEqual(["2"]);
    // The results stay in the config's own dir, all five rows in one file.
    expect(rows(dir)).toHaveLength(5);
  });

  it("copies the whole dir but the output and state dirs outside git; no provenance columns", async () => {
    const markers = tempDir();
    writeFileSync(join(markers, "go"), "");
    const dir = project(markers);
    mkdirSync(join(dir, "data"));
    writeFile(join(dir, "data"), "train.txt", "examples\n");
    await run(dir, []);
    const copy = join(dir, ".labsweep", "snapshots", "1");
    expect(readdirSync(copy).sort()).toEqual([".gitignore", "data", "model.py", "sweep.yaml", "train.py"]);
    expect(existsSync(join(copy, "data", "train.txt"))).toBe(true);
    expect(rows(dir).map((row) => row.cwd)).toEqual([copy, copy, copy]);
    expect(Object.keys(rows(dir)[0] ?? {})).not.toContain("git_commit");
  });

  it("runs from the config's dir again once the config drops snapshot: true", async () => {
    const markers = tempDir();
    writeFileSync(join(markers, "go"), "");
    const dir = project(markers);
    commitAll(dir);
    await run(dir, []);
    writeFile(
      dir,
      "sweep.yaml",
      readFileSync(join(dir, "sweep.yaml"), "utf8").replace("snapshot: true", "snapshot: false"),
    );
    await run(dir, ["--set", "x=1,2,3,4"]);
    expect(rows(dir)[3]).toMatchObject({ x: "4", cwd: dir });
    // No attempt runs from the retired copy: it is deleted.
    expect(readdirSync(join(dir, ".labsweep", "snapshots"))).toEqual([]);
  });
});
