/**
 * End to end through the real CLI (`npm run build` first): `--set` on a YAML sweep (replace,
 * add, PHASE.param), a quick grid from `--command` alone with `status` and `retry` finding
 * ./.labsweep, `plan --set … --list` after a partial run, a --set value being the same task as
 * the YAML value, and every kind of bad input: exit 2, one line naming the flag, nothing written.
 */
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CLEAN_ENV, runCli, startCli, tempDir, watch, writeFile } from "./helpers/cli.js";

// Writes its metric; fails for lr 0.5 while the file `fail` exists.
const TASK = `if [ "$1" = 0.5 ] && [ -e fail ]; then exit 3; fi
printf '{"loss": "%s-%s"}' "$1" "$2" > "$LABSWEEP_RESULT_FILE"
`;

const SWEEP = `command: sh task.sh {lr} {seed}
retries: 0
train:
  output_dir: out/train
  defaults: {seed: 0}
  combinations:
    - lr: [0.1]
probe:
  output_dir: out/probe
  command: sh task.sh {depth} x
  combinations:
    - depth: [1]
`;

const RUN = ["--no-dashboard", "--progress-every", "60"];

/** A results CSV as rows of column → cell. */
function csv(path: string): Array<Record<string, string>> {
  const [header, ...lines] = readFileSync(path, "utf8").trim().split("\n");
  const names = (header as string).split(",");
  return lines.map((line) => Object.fromEntries(line.split(",").map((cell, i) => [names[i], cell])));
}

const cells = (rows: Array<Record<string, string>>, ...names: string[]) =>
  rows.map((row) => names.map((name) => row[name]).join(" ")).sort();

describe("--set on a YAML sweep", () => {
  it("replaces and adds values, per phase with PHASE.param; a YAML value is the same task", async () => {
    const dir = tempDir();
    writeFile(dir, "task.sh", TASK);
    writeFile(dir, "sweep.yaml", SWEEP);
    const first = await runCli(["run", "sweep.yaml", ...RUN], { cwd: dir });
    expect(first.code, first.stderr).toBe(0);

    // lr 0.1 seed 0 ran from the YAML: planning the --set grid shows it done, the rest to add.
    const args = ["sweep.yaml", "--set", "lr=0.1,0.2", "--set", "seed=range(2)", "--set", "probe.depth=2"];
    const plan = await runCli(["plan", ...args, "--list"], { cwd: dir });
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout.split("\n").filter((line) => line.startsWith("#"))).toEqual([
      "#1 id 1 (succeeded) train: seed=0 lr=0.1",
      "#2 train: seed=1 lr=0.1",
      "#3 train: seed=0 lr=0.2",
      "#4 train: seed=1 lr=0.2",
      "#5 probe: depth=2 seed=0",
      "#6 probe: depth=2 seed=1",
    ]);
    expect(plan.stderr).toContain("labsweep: 6 tasks: 5 to add, 1 done");

    const second = await runCli(["run", ...args, ...RUN], { cwd: dir });
    expect(second.code, second.stderr).toBe(0);
    // probe's depth 1 is no longer in the grid: kept in the ledger, not run again.
    expect(second.stderr).toContain("6 unique tasks (0 merged, 5 new, 1 no longer in the configs)");
    expect(cells(csv(join(dir, "out/train/final_results.csv")), "lr", "seed", "loss")).toEqual([
      "0.1 0 0.1-0",
      "0.1 1 0.1-1",
      "0.2 0 0.2-0",
      "0.2 1 0.2-1",
    ]);
    expect(cells(csv(join(dir, "out/probe/final_results.csv")), "depth", "seed", "loss")).toEqual([
      // The first run's row, from before probe had a seed.
      "1  1-x",
      "2 0 2-x",
      "2 1 2-x",
    ]);

    // Everything is done now, whichever way each value was given.
    const again = await runCli(["plan", ...args, "--list", "--json"], { cwd: dir });
    const listed = again.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { done: boolean; state: string });
    expect(listed.map((task) => [task.done, task.state])).toEqual(
      Array.from({ length: 6 }, () => [true, "succeeded"]),
    );
  }, 60_000);
});

describe("a quick grid: --command with no config", () => {
  it("runs in ./, keeps state in ./.labsweep, results in ./results; status and retry find it", async () => {
    const dir = tempDir();
    writeFile(dir, "task.sh", TASK);
    writeFile(dir, "fail", "");
    const grid = ["--command", "sh task.sh {lr} {seed}", "--set", "lr=0.1,0.5", "--set", "seed=range(2)"];
    const first = await runCli(["run", ...grid, ...RUN], { cwd: dir });
    expect(first.code, first.stderr).toBe(1);
    expect(first.stderr).toContain(`state in ${join(dir, ".labsweep")}`);
    expect(cells(csv(join(dir, "results/final_results.csv")), "phase", "lr", "seed", "loss")).toEqual([
      "grid 0.1 0 0.1-0",
      "grid 0.1 1 0.1-1",
    ]);

    const status = await runCli(["status", "--json"], { cwd: dir });
    expect(status.code, status.stderr).toBe(0);
    const report = JSON.parse(status.stdout) as { succeeded: number; failed: number; stateDir: string };
    expect([report.succeeded, report.failed, report.stateDir]).toEqual([2, 2, join(dir, ".labsweep")]);

    rmSync(join(dir, "fail"));
    const retry = await runCli(["retry", "--failed"], { cwd: dir });
    expect(retry.code, retry.stderr).toBe(0);
    expect(retry.stdout).toContain("2 failed tasks will run again");
    const second = await runCli(["run", ...grid, ...RUN], { cwd: dir });
    expect(second.code, second.stderr).toBe(0);
    expect(cells(csv(join(dir, "results/final_results.csv")), "lr", "seed")).toEqual([
      "0.1 0",
      "0.1 1",
      "0.5 0",
      "0.5 1",
    ]);
    const text = await runCli(["status"], { cwd: dir });
    expect(text.stdout).toContain("grid: 4/4 succeeded");
  }, 60_000);

  it("serves to agents too (serve --command --set), and refuses labsweep add: no config to extend", async () => {
    const dir = tempDir();
    writeFile(dir, "task.sh", TASK);
    const grid = ["--command", "sh task.sh {lr} {seed}", "--set", "lr=0.1,0.5", "--set", "seed=range(2)"];
    const served = watch(
      startCli(["serve", ...grid, "--port", "0", "--exit-when-done"], { cwd: dir, env: CLEAN_ENV }),
    );
    try {
      await served.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
      const url = (/^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(served.output()) as RegExpExecArray)[1] as string;
      const state = join(dir, ".labsweep");
      const admin = (await runCli(["token", "--admin", "--state", state])).stdout.trim();
      writeFile(dir, "more.yaml", "command: 'true'\nmore:\n  combinations:\n    - x: [1]\n");
      const add = await runCli(["add", "more.yaml", "--server", url], {
        cwd: dir,
        env: { ...CLEAN_ENV, LABSWEEP_ADMIN_TOKEN: admin },
      });
      expect(add.code).not.toBe(0);
      expect(add.stderr).toMatch(/no sweep that can be extended/);
      const token = (await runCli(["token", "--state", state])).stdout.trim();
      const agent = await runCli(["agent", "--server", url, "--state", join(dir, "agent"), "--slots", "2"], {
        cwd: dir,
        env: { ...CLEAN_ENV, LABSWEEP_TOKEN: token },
      });
      expect(agent.code, agent.stderr).toBe(0);
      expect((await served.result).code).toBe(0);
      expect(cells(csv(join(dir, "results/final_results.csv")), "lr", "seed")).toEqual([
        "0.1 0",
        "0.1 1",
        "0.5 0",
        "0.5 1",
      ]);
    } finally {
      served.child.kill("SIGTERM");
      await served.result;
    }
  }, 60_000);
});

describe("bad input", () => {
  const yaml: Array<[string[], RegExp]> = [
    [
      ["--set", "trian.lr=1"],
      /^labsweep: --set trian\.lr=1: no phase "trian" .*did you mean "train"\? Phases: train, probe\n$/,
    ],
    [["--set", "lrr=1"], /^labsweep: --set lrr=1: no phase has a parameter "lrr" .*did you mean "lr"\?/],
    [["--set", "seed=range(1,x)"], /^labsweep: --set seed=range\(1,x\): malformed range/],
    [["--set", "lr="], /^labsweep: --set lr=: no values after the =/],
    [["--set", "probe.lr=1"], /^labsweep: --set probe\.lr=1: phase "probe" has no parameter "lr"/],
  ];
  const quick: Array<[string[], RegExp]> = [
    [
      ["--command", "sh t.sh {lr} {seed}", "--set", "lr=1"],
      /^labsweep: --command uses \{seed\}, but no --set gives it values: add --set seed=VALUES/,
    ],
    [
      ["--command", "sh t.sh {lr}", "--set", "lr=1", "--set", "wd=2"],
      /^labsweep: --set wd=2: --command uses no \{wd\}/,
    ],
    [["--set", "lr=1"], /^labsweep: no config file given: .*--command/],
    [[], /^labsweep: no config file given/],
  ];
  const cases = [...yaml.map(([flags, message]) => [["sweep.yaml", ...flags], message] as const), ...quick];
  it.each(cases)("%j: exit 2, one clear line, nothing written", async (flags, message) => {
    for (const command of ["run", "plan"]) {
      const dir = tempDir();
      writeFile(dir, "task.sh", TASK);
      writeFile(dir, "sweep.yaml", SWEEP);
      const result = await runCli([command, ...flags, ...(command === "run" ? RUN : [])], { cwd: dir });
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toMatch(message);
      expect(result.stdout).toBe("");
      expect(readdirSync(dir).sort()).toEqual(["sweep.yaml", "task.sh"]);
      expect(existsSync(join(dir, ".labsweep"))).toBe(false);
    }
  });
});
