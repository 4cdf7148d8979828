/**
 * `labsweep verify CONFIG… [--fix]` through the built CLI, after a real `labsweep run` of real
 * python3 tasks: a clean run verifies; a planted duplicate, torn, unknown and deleted row are
 * each named by file:line (exit 1); --fix repairs them and verify exits 0 again; --fix refuses
 * while a `serve` holds the ledger; bad input is exit 2; once on PostgreSQL; a changed or missing
 * stored artifact is found by its checksum, an artifact file no row names is reported and moved
 * aside by --fix. Run `npm run build`
 * first (the CLI runs dist/).
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type CliResult, collect, runCli, startCli, tempDir, writeFile } from "./helpers/cli.js";
import { usePostgres } from "./helpers/postgres.js";

const TASK_PY = `import json, os, sys
json.dump({"loss": int(sys.argv[1]) / 10}, open(os.environ["LABSWEEP_RESULT_FILE"], "w"))
`;
const SWEEP = `command: python3 task.py {x}
main:
  output_dir: out
  combinations:
    - x: [1, 2, 3]
`;
const CLEAN_ENV = {
  LABSWEEP_AGENT_TOKEN: "",
  LABSWEEP_VIEWER_TOKEN: "",
  LABSWEEP_TOKEN: "",
  LABSWEEP_STORE: "",
};

function project(): { dir: string; sweep: string; csv: string } {
  const dir = tempDir();
  writeFile(dir, "task.py", TASK_PY);
  return { dir, sweep: writeFile(dir, "sweep.yaml", SWEEP), csv: join(dir, "out", "final_results.csv") };
}

function cli(args: string[], dir: string): Promise<CliResult> {
  return runCli(args, { cwd: dir, env: CLEAN_ENV });
}

function expectCode(result: CliResult, code: number): void {
  expect(result.code, `exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`).toBe(code);
}

/** The CSV's data lines by x, in the order the run wrote them. */
function rowsByX(csv: string): { header: string; row: Map<string, string> } {
  const [header = "", ...rows] = readFileSync(csv, "utf8").split("\n").filter(Boolean);
  return { header, row: new Map(rows.map((row) => [row.split(",")[1] as string, row])) };
}

describe("labsweep verify", () => {
  it("finds a stored artifact whose bytes changed or that is gone, naming its file", async () => {
    const dir = tempDir();
    writeFile(
      dir,
      "task.py",
      `import json, os, sys
open(os.path.join(os.environ["LABSWEEP_WORK_DIR"], "model.txt"), "w").write("weights " + sys.argv[1])
json.dump({"loss": 0.5}, open(os.environ["LABSWEEP_RESULT_FILE"], "w"))
`,
    );
    const sweep = writeFile(
      dir,
      "sweep.yaml",
      'command: python3 task.py {x}\nartifacts: ["*.txt"]\nmain:\n  output_dir: out\n  combinations:\n    - x: [1, 2]\n',
    );
    expectCode(await cli(["run", sweep, "--no-dashboard"], dir), 0);
    expectCode(await cli(["verify", sweep], dir), 0);
    const stored = readdirSync(join(dir, "out", "artifacts")).filter((name) => !name.startsWith("."));
    expect(stored).toHaveLength(2);
    const [first, second] = stored.map((signature) => join(dir, "out", "artifacts", signature, "model.txt"));
    writeFileSync(first as string, "weights X"); // same size, other bytes
    rmSync(second as string);
    const broken = await cli(["verify", sweep], dir);
    expectCode(broken, 1);
    expect(broken.stdout).toContain(`${first}: artifact-sha256:`);
    expect(broken.stdout).toContain(`${second}: artifact-missing:`);
  });

  it("reports an artifact file no row names (another attempt's left behind) and --fix moves it aside", async () => {
    const dir = tempDir();
    writeFile(
      dir,
      "task.py",
      `import os
open(os.path.join(os.environ["LABSWEEP_WORK_DIR"], "model.txt"), "w").write("weights")
`,
    );
    const sweep = writeFile(
      dir,
      "sweep.yaml",
      'command: python3 task.py\nartifacts: ["*.txt"]\nmain:\n  output_dir: out\n  combinations:\n    - x: [1]\n',
    );
    expectCode(await cli(["run", sweep, "--no-dashboard"], dir), 0);
    const artifacts = join(dir, "out", "artifacts");
    const [signature = ""] = readdirSync(artifacts).filter((name) => !name.startsWith("."));
    // What a coordinator killed between a success's commit and deleting a superseded attempt's
    // files leaves: files no artifact row names, beside the success's own.
    mkdirSync(join(artifacts, signature, "plots"));
    writeFileSync(join(artifacts, signature, "stale.txt"), "old attempt");
    writeFileSync(join(artifacts, signature, "plots", "old.png"), "old plot");
    const found = await cli(["verify", sweep], dir);
    expectCode(found, 1);
    expect(found.stdout).toContain(
      `${join(artifacts, signature, "plots", "old.png")}: artifact-unknown: task 1:`,
    );
    expect(found.stdout).toContain(`${join(artifacts, signature, "stale.txt")}: artifact-unknown: task 1:`);
    expect(found.stdout).toContain("2 problems (2 artifact-unknown)");
    const fixed = await cli(["verify", sweep, "--fix"], dir);
    expectCode(fixed, 0);
    const [aside = ""] = readdirSync(artifacts).filter((name) => name.startsWith(".foreign-"));
    expect(fixed.stdout).toContain(`fix: moved 2 unknown artifact files into ${join(artifacts, aside)}`);
    // Moved, never deleted; the success's own file stays where it was.
    expect(readFileSync(join(artifacts, aside, signature, "stale.txt"), "utf8")).toBe("old attempt");
    expect(readFileSync(join(artifacts, aside, signature, "plots", "old.png"), "utf8")).toBe("old plot");
    expect(readdirSync(join(artifacts, signature))).toEqual(["plots", "model.txt"].sort());
    expectCode(await cli(["verify", sweep], dir), 0);
  });

  it("passes a clean run, names each planted problem by file:line, and --fix repairs them all", async () => {
    const { dir, sweep, csv } = project();
    expectCode(await cli(["run", sweep, "--no-dashboard"], dir), 0);
    const clean = await cli(["verify", sweep], dir);
    expectCode(clean, 0);
    expect(clean.stdout).toContain("verify: 1 output dir, 3 rows: every result in place");

    const { header, row } = rowsByX(csv);
    const [one, three] = [row.get("1") as string, row.get("3") as string];
    // x=2 deleted; line 3 duplicates x=1; lines 5-6 are x=7, no task's; line 7 is cut short.
    // x=7's loss is a quoted cell holding a newline and a terminal escape: printed escaped.
    const hostile = one.replace("main,1,0.1,", 'main,7,"0.7\n\u001b[31m",');
    const planted = `${[header, one, one, three, hostile].join("\n")}\nmain,3,0.`;
    writeFileSync(csv, planted);
    const found = await cli(["verify", sweep], dir);
    expectCode(found, 1);
    expect(found.stdout).toContain(
      `${csv}:3: duplicate: task 1 {"x":1}: a second row of this task (the first is line 2)`,
    );
    expect(found.stdout).toContain(
      `${csv}:5: unknown: no task of this dir has these parameters: phase=main, x=7, loss=0.7\\u000a\\u001b[31m, wall_seconds=`,
    );
    expect(found.stdout).toContain(`${csv}:7: torn: a last row cut short`);
    expect(found.stdout).toContain(
      `${csv}: missing: task 2 {"x":2}: no row holds this succeeded task's metrics`,
    );
    expect(found.stdout).toContain(
      "verify: 4 problems (1 duplicate, 1 unknown, 1 torn, 1 missing) in 1 file",
    );
    const json = await cli(["verify", sweep, "--json"], dir);
    expectCode(json, 1);
    const parsed = JSON.parse(json.stdout) as {
      ok: boolean;
      problems: Array<{ kind: string; line: number | null }>;
    };
    expect(parsed.ok).toBe(false);
    expect(parsed.problems.map((problem) => [problem.kind, problem.line])).toEqual([
      ["duplicate", 3],
      ["unknown", 5],
      ["torn", 7],
      ["missing", null],
    ]);
    // Without --fix nothing is written.
    expect(readFileSync(csv, "utf8")).toBe(planted);

    const fixed = await cli(["verify", sweep, "--fix"], dir);
    expectCode(fixed, 0);
    expect(fixed.stdout).toMatch(/fix: moved 3 rows into .*final_results\.csv\.foreign-.*\.csv/);
    expect(fixed.stdout).toContain("fix: 1 missing row owed to");
    const [side] = readdirSync(join(dir, "out")).filter((name) =>
      name.startsWith("final_results.csv.foreign-"),
    );
    expect(readFileSync(join(dir, "out", side as string), "utf8")).toBe(
      `source_line,reason,${header}\n3,duplicate,${one}\n5,unknown,${hostile}\n7,torn,"main,3,0."\n`,
    );
    expect(readFileSync(csv, "utf8")).toBe(`${[header, one, three, row.get("2")].join("\n")}\n`);
    expectCode(await cli(["verify", sweep], dir), 0);
  });

  it("refuses --fix while serve holds the ledger (exit 2), and still checks without it", async () => {
    const { dir, sweep } = project();
    expectCode(await cli(["run", sweep, "--no-dashboard"], dir), 0);
    const server = startCli(["serve", sweep, "--port", "0"], { cwd: dir, env: CLEAN_ENV });
    const exit = collect(server, 60_000);
    try {
      // serve prints its URL once it holds the state dir.
      await new Promise<void>((resolve, reject) => {
        server.stdout?.on("data", (chunk: Buffer) => {
          if (chunk.toString().includes("\n")) resolve();
        });
        void exit.then((result) => reject(new Error(`serve exited ${result.code}:\n${result.stderr}`)));
      });
      const refused = await cli(["verify", sweep, "--fix"], dir);
      expectCode(refused, 2);
      expect(refused.stderr).toContain(`cannot --fix while a labsweep run or serve is using this ledger`);
      expect(refused.stderr).toContain(`(pid ${server.pid})`);
      expectCode(await cli(["verify", sweep], dir), 0);
    } finally {
      server.kill("SIGTERM");
      await exit;
    }
  });

  it("holds failed_experiments.csv to the ledger: a line of no task is named, and --fix moves it aside", async () => {
    const dir = tempDir();
    writeFile(dir, "task.py", `import sys\nsys.exit(int(sys.argv[1]))\n`);
    const sweep = writeFile(
      dir,
      "sweep.yaml",
      `command: python3 task.py {x}\nretries: 0\nmain:\n  output_dir: out\n  combinations:\n    - x: [0, 3]\n`,
    );
    expectCode(await cli(["run", sweep, "--no-dashboard"], dir), 1);
    // A failed task is owed no row: all is well.
    expectCode(await cli(["verify", sweep], dir), 0);
    const log = join(dir, ".labsweep", "failed_experiments.csv");
    const text = readFileSync(log, "utf8");
    const [header, line] = text.split("\n");
    expect(header).toMatch(/^timestamp,task_id,/);
    const planted = `${text}${line?.replace(/^([^,]*),2,/, "$1,99,")}\n`;
    writeFileSync(log, planted);
    const found = await cli(["verify", sweep], dir);
    expectCode(found, 1);
    expect(found.stdout).toContain(`${log}:3: unknown: task_id "99" is no task of the ledger`);
    expectCode(await cli(["verify", sweep, "--fix"], dir), 0);
    expect(readFileSync(log, "utf8")).toBe(text);
    expectCode(await cli(["verify", sweep], dir), 0);
  });

  it("is exit 2 for a config that does not exist or a sweep that never ran", async () => {
    const { dir, sweep } = project();
    const missing = await cli(["verify", join(dir, "nope.yaml")], dir);
    expectCode(missing, 2);
    expect(missing.stderr).toContain("nope.yaml");
    const noLedger = await cli(["verify", sweep], dir);
    expectCode(noLedger, 2);
    expect(noLedger.stderr).toContain(`no ledger in ${join(dir, ".labsweep")}`);
  });
});

describe("labsweep verify on PostgreSQL", () => {
  const postgres = usePostgres();

  it("checks and repairs against a PostgreSQL ledger", async () => {
    const { dir, sweep, csv } = project();
    const url = await postgres().createDatabase();
    expectCode(await cli(["run", sweep, "--store", url, "--no-dashboard"], dir), 0);
    expectCode(await cli(["verify", sweep, "--store", url], dir), 0);
    const { header, row } = rowsByX(csv);
    writeFileSync(csv, `${[header, row.get("1"), row.get("1"), row.get("3")].join("\n")}\n`);
    const found = await cli(["verify", sweep, "--store", url], dir);
    expectCode(found, 1);
    expect(found.stdout).toContain(`${csv}:3: duplicate: task 1`);
    expect(found.stdout).toContain(`${csv}: missing: task 2`);
    expectCode(await cli(["verify", sweep, "--store", url, "--fix"], dir), 0);
    expectCode(await cli(["verify", sweep, "--store", url], dir), 0);
  });
});
