/**
 * End to end: real `labsweep` processes, real SQLite ledgers, real task subprocesses. Crash
 * safety (kill -9 at random moments), resume from result CSVs (labsweep's and the original
 * system's), de-duplication across phases, edited configs, and exports.
 * Run `npm run build` first: these tests run bin/labsweep.js, which runs dist/.
 */
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { describe, expect, it } from "vitest";
import { Database } from "../src/ledger/sqliteDriver.js";
import { type CliResult, collect, runCli, startCli, tempDir, writeFile } from "./helpers/cli.js";

/** A results CSV parsed strictly: a torn or ragged row makes csv-parse throw. */
function readResults(path: string): { header: string[]; rows: Record<string, string>[]; text: string } {
  const text = readFileSync(path, "utf8");
  expect(text.endsWith("\n"), `${path} ends mid-row:\n${text}`).toBe(true);
  const records = parse(text, { relax_column_count: false, skip_empty_lines: false }) as string[][];
  const [header = [], ...data] = records;
  const rows = data.map((cells) =>
    Object.fromEntries(header.map((name, index) => [name, cells[index] ?? ""])),
  );
  return { header, rows, text };
}

/** `labsweep status --json` (asserting it worked). */
async function status(dir: string, config: string): Promise<Record<string, number>> {
  const result = await runCli(["status", config, "--json"], { cwd: dir });
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as Record<string, number>;
}

/** `labsweep plan --json`. */
async function plan(
  dir: string,
  config: string,
): Promise<{ unique: number; complete: number; remaining: number; phases: Array<Record<string, number>> }> {
  const result = await runCli(["plan", config, "--json"], { cwd: dir });
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout);
}

function expectOk(result: CliResult): void {
  expect(result.code, `labsweep failed:\n${result.stderr}`).toBe(0);
}

/** Lines of an append-only file the tasks write to ([] if no task ran). */
function lines(path: string): string[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8").split("\n").filter(Boolean);
}

function sorted(values: Iterable<string | undefined>): Array<string | undefined> {
  return [...values].sort();
}

/**
 * A task script that records every invocation (its arguments) in calls.txt and writes
 * `{"acc": $1, "loss": $2}` as its metrics.
 */
function countingTask(dir: string, sleepSeconds = 0): string {
  return writeFile(
    dir,
    "task.sh",
    [
      `echo "$*" >> "${join(dir, "calls.txt")}"`,
      sleepSeconds > 0 ? `sleep ${sleepSeconds}` : "",
      `printf '{"acc": %s, "loss": %s}' "$1" "$2" > "$LABSWEEP_RESULT_FILE"`,
      "",
    ].join("\n"),
  );
}

describe("kill -9 of labsweep run, then resume", () => {
  /** A task process recorded by a test task script, alive (not a zombie) and started by this test. */
  interface LiveTask {
    pid: number;
    kind: string;
    attemptId: number;
    command: string;
  }

  /**
   * The recorded processes still alive. A pid counts only while its environment carries
   * `marker`, so a recycled pid is never mistaken for a task.
   */
  function liveTasks(pidFile: string, marker: string): LiveTask[] {
    const live: LiveTask[] = [];
    for (const line of lines(pidFile)) {
      const [kind = "", pidText = ""] = line.split(" ");
      const pid = Number(pidText);
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) continue;
        const environment = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
        if (!environment.includes(marker)) continue;
        const attempt = environment.find((entry) => entry.startsWith("LABSWEEP_ATTEMPT_ID=")) ?? "";
        const command = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
        live.push({ pid, kind, attemptId: Number(attempt.split("=")[1]), command });
      } catch {
        // gone
      }
    }
    return live;
  }

  async function waitForTasksToEnd(pidFile: string, marker: string, ms: number): Promise<LiveTask[]> {
    const deadline = Date.now() + ms;
    for (;;) {
      const live = liveTasks(pidFile, marker);
      if (live.length === 0 || Date.now() > deadline) return live;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Attempt ids whose process (group leader pid) the ledger recorded. */
  function attemptsWithPid(dir: string): Set<number> {
    const path = join(dir, ".labsweep", "ledger.sqlite");
    if (!existsSync(path)) return new Set();
    const db = new Database(path, { readonly: true });
    try {
      const rows = db.prepare("SELECT id FROM attempts WHERE pid IS NOT NULL").all() as Array<{ id: number }>;
      return new Set(rows.map((row) => row.id));
    } finally {
      db.close();
    }
  }

  /**
   * A task script recording its process group leader (the `sh -c` that setpriv started; dash
   * forks for `sh task.sh`, so that is the parent of this shell), its own shell and a stray
   * child that would outlive it (a data loader, say), then working for `seconds`.
   */
  function recordingTask(dir: string, pidFile: string, seconds: string): void {
    writeFile(
      dir,
      "task.sh",
      [
        `echo "leader $PPID" >> "${pidFile}"`,
        `echo "shell $$" >> "${pidFile}"`,
        "sleep 30 &",
        `echo "stray $!" >> "${pidFile}"`,
        `echo "$*" >> "${join(dir, "calls.txt")}"`,
        `sleep ${seconds}`,
        `printf '{"acc": %s, "loss": 0.5}' "$1" > "$LABSWEEP_RESULT_FILE"`,
        "",
      ].join("\n"),
    );
  }

  /** A PATH of symlinks to every command on the current PATH except `hidden`. */
  function pathWithout(dir: string, hidden: string): string {
    const bin = join(dir, `bin-without-${hidden}`);
    mkdirSync(bin);
    for (const source of (process.env.PATH ?? "").split(":").filter(Boolean)) {
      if (!existsSync(source)) continue;
      for (const name of readdirSync(source)) {
        if (name === hidden || name.startsWith(`${hidden}.`) || existsSync(join(bin, name))) continue;
        symlinkSync(join(source, name), join(bin, name));
      }
    }
    return bin;
  }

  it("leaves one row per task in every CSV, a complete ledger and no task processes", async () => {
    const dir = tempDir();
    const pidFile = join(dir, "pids.txt");
    const marker = `LABSWEEP_E2E_MARKER=${dir}`;
    const env = { LABSWEEP_E2E_MARKER: dir };
    recordingTask(dir, pidFile, "0.3");
    const config = writeFile(
      dir,
      "sweep.yaml",
      `command: sh task.sh {seed} {width}
retries: 0
a:
  output_dir: out/a
  combinations:
    - seed: [1, 2, 3, 4, 5, 6]
    - width: [4, 8, 16]
b:
  output_dir: out/b
  combinations:
    - seed: [1, 2, 3]
    - width: [4, 32]
`,
    );
    // Processes of attempts whose pid never reached the ledger (labsweep killed between spawning
    // a task and recording it): a known gap, tested on its own below; killed here when seen.
    const unrecorded: LiveTask[] = [];
    const setAsideUnrecorded = (live: LiveTask[]): LiveTask[] => {
      if (live.length === 0) return live;
      const recorded = attemptsWithPid(dir);
      const rest: LiveTask[] = [];
      for (const task of live) {
        if (recorded.has(task.attemptId)) rest.push(task);
        else {
          unrecorded.push(task);
          process.kill(task.pid, "SIGKILL");
        }
      }
      return rest;
    };

    const delays: number[] = [];
    for (let round = 0; round < 3; round++) {
      const delay = 200 + Math.floor(Math.random() * 1300);
      delays.push(delay);
      const child = startCli(["run", config, "--slots", "3"], { cwd: dir, env });
      const exited = collect(child, 30_000);
      await new Promise((resolve) => setTimeout(resolve, delay));
      child.kill("SIGKILL");
      const result = await exited;
      // A run that finished before the kill is fine too; anything else is a failure.
      if (result.signal === null) expect(result.code, result.stderr).toBe(0);
      // pdeathsig: each task's process group leader dies with labsweep at once.
      const leaders = (await waitForTasksToEnd(pidFile, marker, 1000)).filter(
        (task) => task.kind === "leader",
      );
      expect(setAsideUnrecorded(leaders), `leaders alive after the kill at ${delays.at(-1)} ms`).toEqual([]);
    }

    const final = await runCli(["run", config, "--slots", "3"], { cwd: dir, env, timeoutMs: 30_000 });
    expectOk(final);

    const expectedA = new Set<string>();
    for (const seed of [1, 2, 3, 4, 5, 6]) for (const width of [4, 8, 16]) expectedA.add(`${seed}/${width}`);
    const expectedB = new Set<string>();
    for (const seed of [1, 2, 3]) for (const width of [4, 32]) expectedB.add(`${seed}/${width}`);
    for (const [name, expected] of [
      ["a", expectedA],
      ["b", expectedB],
    ] as const) {
      const csv = readResults(join(dir, "out", name, "final_results.csv"));
      const keys = csv.rows.map((row) => `${row.seed}/${row.width}`);
      expect(sorted(keys), `out/${name} after kills at ${delays} ms:\n${csv.text}`).toEqual(sorted(expected));
      for (const row of csv.rows) {
        expect(row.phase).toBe(name);
        expect(row.acc).toBe(row.seed);
      }
    }

    const counts = await status(dir, config);
    expect(counts).toMatchObject({
      unique: 21,
      succeeded: 21,
      failed: 0,
      running: 0,
      pending: 0,
      dropped: 0,
    });
    // Every task ran to completion at least once; a task killed mid-run may have run again.
    expect(new Set(lines(join(dir, "calls.txt"))).size).toBe(21);
    // Nothing the tasks started is left: the shells and strays of killed runs were killed at the
    // next start, those of finished tasks when they ended.
    const left = setAsideUnrecorded(await waitForTasksToEnd(pidFile, marker, 2000));
    expect(left, `task processes alive after kills at ${delays} ms and a full run`).toEqual([]);
    if (unrecorded.length > 0) {
      console.warn(
        `kills at ${delays} ms hit the spawn-to-record window; processes left by attempts without a pid: ${JSON.stringify(unrecorded)}`,
      );
    }
  });

  // Tasks are killed when labsweep dies (the launcher SIGKILLs their groups; without python3,
  // setpriv's parent-death signal reaches only the shell) and, whatever is left, at the next
  // start: through the pid the ledger recorded for the attempt. `forgetPid` is labsweep killed
  // between starting a task and recording its pid.
  async function killAndRestart({
    forgetPid,
    python,
  }: {
    forgetPid: boolean;
    python: boolean;
  }): Promise<void> {
    const dir = tempDir();
    const pidFile = join(dir, "pids.txt");
    const marker = `LABSWEEP_E2E_MARKER=${dir}`;
    const env: NodeJS.ProcessEnv = { LABSWEEP_E2E_MARKER: dir };
    if (!python) env.PATH = pathWithout(dir, "python3");
    recordingTask(dir, pidFile, '"$2"');
    // The first attempt of each task works for 30 s; the attempts after the restart are quick.
    const config = writeFile(
      dir,
      "sweep.yaml",
      `command: sh task.sh {seed} $([ "$LABSWEEP_ATTEMPT_ID" -le 2 ] && echo 30 || echo 0)
p:
  output_dir: out
  combinations:
    - seed: [1, 2]
`,
    );
    const child = startCli(["run", config, "--slots", "2"], { cwd: dir, env });
    const exited = collect(child, 30_000);
    for (let waited = 0; liveTasks(pidFile, marker).length < 6 && waited < 10_000; waited += 50) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(liveTasks(pidFile, marker)).toHaveLength(6);
    child.kill("SIGKILL");
    await exited;
    if (forgetPid) {
      const db = new Database(join(dir, ".labsweep", "ledger.sqlite"));
      db.prepare("UPDATE attempts SET pid = NULL, log_path = NULL").run();
      db.close();
    }
    try {
      expect(
        (await waitForTasksToEnd(pidFile, marker, 1000)).filter((task) => task.kind === "leader"),
      ).toEqual([]);
      expectOk(await runCli(["run", config, "--slots", "2"], { cwd: dir, env }));
      expect(await waitForTasksToEnd(pidFile, marker, 2000)).toEqual([]);
      expect(readResults(join(dir, "out", "final_results.csv")).rows).toHaveLength(2);
    } finally {
      for (const task of liveTasks(pidFile, marker)) process.kill(task.pid, "SIGKILL");
    }
  }

  it.each([
    { forgetPid: false, python: true, name: "recorded" },
    { forgetPid: true, python: true, name: "never recorded" },
    { forgetPid: false, python: false, name: "recorded, no python3" },
  ])("nothing a killed run's tasks started outlives the next start (pid $name)", killAndRestart);

  // Without python3 (no launcher) dash forks for the command, so the task itself outlives
  // setpriv's parent-death signal; the next start finds it by the state dir in its environment.
  it("nothing a killed run's tasks started outlives the next start (pid never recorded, no python3)", () =>
    killAndRestart({ forgetPid: true, python: false }));

  it("a row appended just before a crash (not yet marked written) is not written again", async () => {
    const dir = tempDir();
    countingTask(dir);
    const config = writeFile(
      dir,
      "sweep.yaml",
      `command: sh task.sh {seed} {lr}
p:
  output_dir: out
  combinations:
    - seed: [1, 2, 3]
    - lr: [0.1, [1, 2]]
`,
    );
    expectOk(await runCli(["run", config, "--slots", "2"], { cwd: dir }));
    const before = readFileSync(join(dir, "out", "final_results.csv"), "utf8");
    // The state a kill -9 between the CSV append (fsynced) and the ledger update leaves behind.
    const db = new Database(join(dir, ".labsweep", "ledger.sqlite"));
    db.prepare("UPDATE result_rows SET written = 0").run();
    db.close();
    const again = await runCli(["run", config, "--slots", "2"], { cwd: dir });
    expectOk(again);
    expect(readFileSync(join(dir, "out", "final_results.csv"), "utf8")).toBe(before);
    expect(lines(join(dir, "calls.txt"))).toHaveLength(6);
  });

  it("a row torn by a crash mid-append is dropped and the file stays parseable", async () => {
    const dir = tempDir();
    countingTask(dir);
    const v1 = `command: sh task.sh {seed} 0.5
p:
  output_dir: out
  combinations:
    - seed: [1, 2]
`;
    const config = writeFile(dir, "sweep.yaml", v1);
    expectOk(await runCli(["run", config, "--slots", "1"], { cwd: dir }));
    const csvPath = join(dir, "out", "final_results.csv");
    writeFileSync(csvPath, `${readFileSync(csvPath, "utf8")}p,3,0.`, { flag: "w" });
    writeFileSync(config, v1.replace("[1, 2]", "[1, 2, 3]"));
    expectOk(await runCli(["run", config, "--slots", "1"], { cwd: dir }));
    const csv = readResults(csvPath);
    expect(sorted(csv.rows.map((row) => row.seed))).toEqual(["1", "2", "3"]);
    expect(csv.rows.find((row) => row.seed === "3")?.acc).toBe("3");
  });
});

describe("phases sharing grid points", () => {
  it("runs a shared task once and writes its row to every output dir", async () => {
    const dir = tempDir();
    countingTask(dir, 0.1);
    const config = writeFile(
      dir,
      "sweep.yaml",
      `command: sh task.sh {seed} {width}
defaults:
  width: 8
first:
  output_dir: out/first
  combinations:
    - seed: [1, 2, 3]
second:
  output_dir: out/second
  combinations:
    - seed: [2, 3, 4]
`,
    );
    const planned = await plan(dir, config);
    expect(planned).toMatchObject({ unique: 4, merged: 2, complete: 0, remaining: 4 });
    expectOk(await runCli(["run", config, "--slots", "2"], { cwd: dir }));
    expect(sorted(lines(join(dir, "calls.txt")))).toEqual(["1 8", "2 8", "3 8", "4 8"]);
    const first = readResults(join(dir, "out", "first", "final_results.csv"));
    const second = readResults(join(dir, "out", "second", "final_results.csv"));
    expect(sorted(first.rows.map((row) => `${row.phase} ${row.seed} ${row.acc}`))).toEqual([
      "first 1 1",
      "first 2 2",
      "first 3 3",
    ]);
    expect(sorted(second.rows.map((row) => `${row.phase} ${row.seed} ${row.acc}`))).toEqual([
      "second 2 2",
      "second 3 3",
      "second 4 4",
    ]);
    expect(await status(dir, config)).toMatchObject({ unique: 4, succeeded: 4 });

    // A second run has nothing to do and changes nothing.
    expectOk(await runCli(["run", config, "--slots", "2"], { cwd: dir }));
    expect(lines(join(dir, "calls.txt"))).toHaveLength(4);
    expect(readResults(join(dir, "out", "first", "final_results.csv")).text).toBe(first.text);
    expect(readResults(join(dir, "out", "second", "final_results.csv")).text).toBe(second.text);
  });
});

describe("resume from the original system's results CSV", () => {
  const ORIGINAL_CSV = `phase,dataset,model_type,width_factor,seed,mean_test_acc,mean_test_loss
width_sweep,cifar10,resnet18,4.0,1,0.81,0.52
width_sweep,cifar10,resnet18,2.0,1,0.71,0.62
width_sweep,cifar10,resnet18,1.0,2,0.61,0.72
`;
  // `epochs` is constant and has no column in the original CSV; widths are 4 there but 4.0 here.
  const CONFIG = `command: sh task.sh {width_factor} {seed} {dataset} {model_type} {epochs}
defaults:
  dataset: cifar10
  model_type: resnet18
  epochs: 10
width_sweep:
  output_dir: results/{dataset}
  combinations:
    - width_factor: [1, 2, 4]
    - seed: [1, 2]
best_width:
  output_dir: results/best
  combinations:
    - width_factor: [4]
    - seed: [1, 2]
`;

  it("counts found rows as complete, runs only the rest, and copies found rows to other dirs", async () => {
    const dir = tempDir();
    writeFile(
      dir,
      "task.sh",
      `echo "$*" >> "${join(dir, "calls.txt")}"
printf '{"mean_test_acc": 0.9, "mean_test_loss": 0.1}' > "$LABSWEEP_RESULT_FILE"
`,
    );
    const original = join(dir, "results", "cifar10", "final_results.csv");
    mkdirSync(join(dir, "results", "cifar10"), { recursive: true });
    writeFileSync(original, ORIGINAL_CSV);
    const config = writeFile(dir, "sweep.yaml", CONFIG);

    const planned = await plan(dir, config);
    expect(planned).toMatchObject({ unique: 6, complete: 3, remaining: 3 });
    expect(planned.phases.map((phase) => [phase.name, phase.complete, phase.remaining])).toEqual([
      ["width_sweep", 3, 3],
      ["best_width", 1, 1],
    ]);

    const run = await runCli(["run", config, "--slots", "2"], { cwd: dir });
    expectOk(run);
    expect(run.stderr).toContain("3 found complete");
    // Only the three tasks the CSV lacks ran.
    expect(sorted(lines(join(dir, "calls.txt")))).toEqual([
      "1 1 cifar10 resnet18 10",
      "2 2 cifar10 resnet18 10",
      "4 2 cifar10 resnet18 10",
    ]);
    const main = readResults(original);
    expect(main.rows).toHaveLength(6);
    // The original rows are kept as they were.
    expect(main.rows.slice(0, 3).map((row) => [row.width_factor, row.seed, row.mean_test_acc])).toEqual([
      ["4.0", "1", "0.81"],
      ["2.0", "1", "0.71"],
      ["1.0", "2", "0.61"],
    ]);
    // (4, 1) was found complete in results/cifar10; results/best lacked it and gets a copy.
    const best = readResults(join(dir, "results", "best", "final_results.csv"));
    expect(sorted(best.rows.map((row) => `${row.width_factor} ${row.seed} ${row.mean_test_acc}`))).toEqual([
      "4 1 0.81",
      "4 2 0.9",
    ]);
    expect(await status(dir, config)).toMatchObject({ unique: 6, succeeded: 6, failed: 0 });

    // With the ledger lost (another machine, a deleted state dir), the CSVs alone — now widened
    // with labsweep's columns, the original rows padded with "" — still say everything is done.
    rmSync(join(dir, ".labsweep"), { recursive: true });
    expect(await plan(dir, config)).toMatchObject({ unique: 6, complete: 6, remaining: 0 });
    const mainText = readFileSync(original, "utf8");
    const bestText = readFileSync(join(dir, "results", "best", "final_results.csv"), "utf8");
    const rerun = await runCli(["run", config, "--slots", "2"], { cwd: dir });
    expectOk(rerun);
    expect(rerun.stderr).toContain("6 found complete");
    expect(lines(join(dir, "calls.txt"))).toHaveLength(3);
    expect(readFileSync(original, "utf8")).toBe(mainText);
    expect(readFileSync(join(dir, "results", "best", "final_results.csv"), "utf8")).toBe(bestText);
  });

  it("recognises list-valued parameters in a results CSV", async () => {
    const dir = tempDir();
    countingTask(dir);
    const config = writeFile(
      dir,
      "sweep.yaml",
      `command: sh task.sh {seed} 0 {layers}
p:
  output_dir: out
  combinations:
    - layers: [[64, 64], [128]]
    - seed: [1, 2]
`,
    );
    expectOk(await runCli(["run", config, "--slots", "2"], { cwd: dir }));
    rmSync(join(dir, ".labsweep"), { recursive: true });
    expect(await plan(dir, config)).toMatchObject({ unique: 4, complete: 4, remaining: 0 });
  });
});

describe("running again with an edited config", () => {
  it("adds and runs new tasks, keeps finished ones, and reports removed ones without deleting them", async () => {
    const dir = tempDir();
    countingTask(dir);
    const v1 = `command: sh task.sh {seed} {width}
p:
  output_dir: out
  combinations:
    - seed: [1, 2, 3]
    - width: [8]
`;
    const config = writeFile(dir, "sweep.yaml", v1);
    expectOk(await runCli(["run", config, "--slots", "2"], { cwd: dir }));
    expect(lines(join(dir, "calls.txt"))).toHaveLength(3);

    writeFileSync(config, v1.replace("[1, 2, 3]", "[2, 3, 4, 5]"));
    expect(await plan(dir, config)).toMatchObject({ unique: 4, complete: 2, remaining: 2 });
    const edited = await runCli(["run", config, "--slots", "2"], { cwd: dir });
    expectOk(edited);
    expect(edited.stderr).toContain("2 new");
    expect(edited.stderr).toContain("1 no longer in the configs");
    expect(sorted(lines(join(dir, "calls.txt")))).toEqual(["1 8", "2 8", "3 8", "4 8", "5 8"]);
    expect(await status(dir, config)).toMatchObject({ unique: 4, succeeded: 4, dropped: 1 });
    // The removed task's row stays in the CSV.
    const csv = readResults(join(dir, "out", "final_results.csv"));
    expect(sorted(csv.rows.map((row) => row.seed))).toEqual(["1", "2", "3", "4", "5"]);

    // Kept, not deleted: putting it back finds it done.
    writeFileSync(config, v1.replace("[1, 2, 3]", "[1, 2, 3, 4, 5]"));
    expectOk(await runCli(["run", config, "--slots", "2"], { cwd: dir }));
    expect(lines(join(dir, "calls.txt"))).toHaveLength(5);
    expect(await status(dir, config)).toMatchObject({ unique: 5, succeeded: 5, dropped: 0 });
    expect(readResults(join(dir, "out", "final_results.csv")).rows).toHaveLength(5);
  });
});

describe("a phase added later", () => {
  it("gets the rows of tasks it shares that had already finished, without running them", async () => {
    const dir = tempDir();
    countingTask(dir);
    const v1 = `command: sh task.sh {seed} {width}
first:
  output_dir: out/first
  combinations:
    - seed: [1, 2]
    - width: [8]
`;
    const config = writeFile(dir, "sweep.yaml", v1);
    expectOk(await runCli(["run", config, "--slots", "2"], { cwd: dir }));
    writeFileSync(
      config,
      `${v1}second:
  output_dir: out/second
  combinations:
    - seed: [2, 3]
    - width: [8]
`,
    );
    expectOk(await runCli(["run", config, "--slots", "2"], { cwd: dir }));
    expect(sorted(lines(join(dir, "calls.txt")))).toEqual(["1 8", "2 8", "3 8"]);
    const second = readResults(join(dir, "out", "second", "final_results.csv"));
    expect(sorted(second.rows.map((row) => `${row.phase} ${row.seed} ${row.acc}`))).toEqual([
      "second 2 2",
      "second 3 3",
    ]);
    // And once only.
    expectOk(await runCli(["run", config, "--slots", "2"], { cwd: dir }));
    expect(readResults(join(dir, "out", "second", "final_results.csv")).text).toBe(second.text);
  });
});

describe("labsweep export", () => {
  it("writes every result as CSV and as JSON lines", async () => {
    const dir = tempDir();
    countingTask(dir);
    const config = writeFile(
      dir,
      "sweep.yaml",
      `command: sh task.sh {seed} {lr}
a:
  output_dir: out/a
  combinations:
    - seed: [1, 2, 3]
    - lr: [0.25, 0.5]
b:
  output_dir: out/b
  combinations:
    - seed: [3, 4]
    - lr: [0.5]
`,
    );
    expectOk(await runCli(["run", config, "--slots", "3"], { cwd: dir }));
    const expected = sorted(
      [...[1, 2, 3].flatMap((seed) => [0.25, 0.5].map((lr) => `${seed} ${lr}`)), "4 0.5"].map(String),
    );

    const csvOut = await runCli(["export", config, "--format", "csv"], { cwd: dir });
    expectOk(csvOut);
    const records = parse(csvOut.stdout, { columns: true }) as Array<Record<string, string>>;
    expect(sorted(records.map((row) => `${row.seed} ${row.lr}`))).toEqual(expected);
    for (const row of records) expect([row.acc, row.loss]).toEqual([row.seed, row.lr]);
    expect(records.find((row) => row.seed === "3" && row.lr === "0.5")?.phases).toBe("a;b");

    const jsonl = await runCli(["export", config, "--format", "jsonl"], { cwd: dir });
    expectOk(jsonl);
    const results = jsonl.stdout
      .split("\n")
      .filter(Boolean)
      .map(
        (line) =>
          JSON.parse(line) as {
            params: { seed: number; lr: number };
            metrics: { acc: number; loss: number };
            phases: string[];
            output_dirs: string[];
          },
      );
    expect(sorted(results.map((result) => `${result.params.seed} ${result.params.lr}`))).toEqual(expected);
    for (const result of results)
      expect(result.metrics).toEqual({ acc: result.params.seed, loss: result.params.lr });
    const shared = results.find((result) => result.params.seed === 3 && result.params.lr === 0.5);
    expect(sorted(shared?.phases ?? [])).toEqual(["a", "b"]);
    expect(sorted(shared?.output_dirs ?? [])).toEqual([join(dir, "out", "a"), join(dir, "out", "b")]);

    // --output writes the same to a file.
    const file = join(dir, "export.jsonl");
    expectOk(await runCli(["export", config, "--format", "jsonl", "--output", file], { cwd: dir }));
    expect(readFileSync(file, "utf8")).toBe(jsonl.stdout);
  });
});
