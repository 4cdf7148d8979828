/**
 * End to end: stopping a run. Ctrl-C once lets running tasks finish and starts nothing new;
 * twice sends SIGTERM to the running tasks' process groups and SIGKILL after --grace. Either way
 * the run exits 130, interrupted tasks go back to pending without spending a retry, and the next
 * run finishes the sweep.
 * Run `npm run build` first: these tests run bin/labsweep.js, which runs dist/.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import { describe, expect, it } from "vitest";
import { Database } from "../src/ledger/sqliteDriver.js";
import { type CliResult, collect, runCli, startCli, tempDir, writeFile } from "./helpers/cli.js";

interface TaskRow {
  id: number;
  state: string;
  attempts: number;
  params_json: string;
}

interface AttemptRow {
  id: number;
  task_id: number;
  number: number;
  outcome: string | null;
  exit_code: number | null;
  signal: string | null;
  error: string | null;
}

function ledger(dir: string): { tasks: TaskRow[]; attempts: AttemptRow[] } {
  const db = new Database(join(dir, ".labsweep", "ledger.sqlite"), { readonly: true });
  try {
    return {
      tasks: db.prepare("SELECT id, state, attempts, params_json FROM tasks ORDER BY id").all() as TaskRow[],
      attempts: db.prepare("SELECT * FROM attempts ORDER BY id").all() as AttemptRow[],
    };
  } finally {
    db.close();
  }
}

function expectCode(result: CliResult, code: number): void {
  expect(result.code, `labsweep exited ${result.code}:\n${result.stderr}`).toBe(code);
}

/** Polls `condition`; fails early, with its output, if the run `done` ends first. */
async function waitUntil(
  condition: () => boolean,
  timeoutMs: number,
  what: string,
  done?: Promise<CliResult>,
): Promise<void> {
  let ended: CliResult | null = null;
  void done?.then((result) => {
    ended = result;
  });
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (ended) throw new Error(`labsweep ended while waiting for ${what}:\n${JSON.stringify(ended)}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Files in `dir` whose names start with `prefix`, sorted. */
function marks(dir: string, prefix: string): string[] {
  return readdirSync(dir)
    .filter((name) => name.startsWith(prefix))
    .sort();
}

function lineCount(path: string): number {
  return existsSync(path) ? readFileSync(path, "utf8").split("\n").filter(Boolean).length : 0;
}

/** Whether a process is running (a zombie, dead but not yet reaped, is not). */
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/**
 * `python3 task.py X` appends its pid to started-X, sleeps `seconds`, then appends to finished-X
 * and writes its metrics. On SIGTERM it takes half a second (a checkpoint), appends its pid to
 * term-X and exits 143.
 */
function pythonTask(dir: string, seconds: number): void {
  writeFile(
    dir,
    "task.py",
    `import json, os, signal, sys, time
x = sys.argv[1]
def on_term(signum, frame):
    time.sleep(0.5)  # saving a checkpoint
    with open(f"term-{x}", "a") as f:
        f.write(f"{os.getpid()}\\n")
    sys.exit(143)
signal.signal(signal.SIGTERM, on_term)
with open(f"started-{x}", "a") as f:
    f.write(f"{os.getpid()}\\n")
time.sleep(${seconds})
with open(f"finished-{x}", "a") as f:
    f.write("done\\n")
with open(os.environ["LABSWEEP_RESULT_FILE"], "w") as f:
    json.dump({"x": int(x)}, f)
`,
  );
}

function sweep(dir: string, values: number[], retries = 3): string {
  return writeFile(
    dir,
    "sweep.yaml",
    `command: python3 task.py {x}\nretries: ${retries}\nlong:\n  combinations:\n    - x: [${values.join(", ")}]\n`,
  );
}

describe("Ctrl-C", () => {
  it("once: starts nothing new, lets running tasks finish, exits 130; the next run does the rest", async () => {
    const dir = tempDir();
    pythonTask(dir, 3);
    const config = sweep(dir, [1, 2, 3, 4]);
    const cli = startCli(["run", config, "--slots", "2"], { cwd: dir });
    const done = collect(cli);
    await waitUntil(() => marks(dir, "started-").length === 2, 15_000, "two tasks to start", done);

    // Another process can read the status while the run goes on.
    const status = await runCli(["status", config, "--json"], { cwd: dir });
    expectCode(status, 0);
    expect(JSON.parse(status.stdout)).toMatchObject({ unique: 4, running: 2, succeeded: 0 });

    cli.kill("SIGINT");
    const result = await done;
    expectCode(result, 130);
    expect(result.stderr).toContain("stopping — no new tasks");
    expect(result.stderr).toContain("run the same command again to resume");

    // The two running tasks finished normally; the other two never started, though slots freed up.
    expect(marks(dir, "started-")).toEqual(["started-1", "started-2"]);
    expect(marks(dir, "finished-")).toEqual(["finished-1", "finished-2"]);
    expect(marks(dir, "term-")).toEqual([]);
    const stopped = ledger(dir);
    expect(stopped.tasks.map((task) => task.state)).toEqual(["succeeded", "succeeded", "pending", "pending"]);
    expect(stopped.attempts).toHaveLength(2);

    const rerun = await runCli(["run", config, "--slots", "2"], { cwd: dir });
    expectCode(rerun, 0);
    const after = ledger(dir);
    expect(after.tasks.map((task) => task.state)).toEqual([
      "succeeded",
      "succeeded",
      "succeeded",
      "succeeded",
    ]);
    // Each task ran exactly once over both runs.
    for (const x of [1, 2, 3, 4]) expect(lineCount(join(dir, `started-${x}`))).toBe(1);
    expect(after.attempts).toHaveLength(4);
  });

  it("twice: SIGTERMs running tasks, which go back to pending without spending a retry", async () => {
    const dir = tempDir();
    pythonTask(dir, 30);
    // No retries at all: if an interruption counted as a failure, these tasks would end failed.
    const config = sweep(dir, [1, 2], 0);
    const cli = startCli(["run", config, "--slots", "2", "--grace", "5"], { cwd: dir });
    const done = collect(cli);
    await waitUntil(() => marks(dir, "started-").length === 2, 15_000, "two tasks to start", done);

    const sentAt = Date.now();
    cli.kill("SIGINT");
    await new Promise((resolve) => setTimeout(resolve, 200));
    cli.kill("SIGINT");
    const result = await done;
    expectCode(result, 130);
    expect(result.stderr).toContain("terminating running tasks");
    // The tasks exit on SIGTERM at once: no waiting for their 30 s sleep, nor for the grace period.
    expect(Date.now() - sentAt).toBeLessThan(4000);

    // Each task's own SIGTERM handler ran to the end: the shell above it dying of SIGTERM at once
    // did not cut its grace period short.
    expect(marks(dir, "term-")).toEqual(["term-1", "term-2"]);
    expect(marks(dir, "finished-")).toEqual([]);
    const stopped = ledger(dir);
    expect(stopped.tasks).toMatchObject([
      { state: "pending", attempts: 0 },
      { state: "pending", attempts: 0 },
    ]);
    expect(stopped.attempts.map((attempt) => attempt.outcome)).toEqual(["interrupted", "interrupted"]);
    expect(stopped.attempts[0]?.error).toBe("stopped by the user");

    // The next run starts them again; they are quick this time.
    pythonTask(dir, 0);
    const rerun = await runCli(["run", config, "--slots", "2"], { cwd: dir });
    expectCode(rerun, 0);
    const after = ledger(dir);
    expect(after.tasks).toMatchObject([
      { state: "succeeded", attempts: 0 },
      { state: "succeeded", attempts: 0 },
    ]);
    for (const task of after.tasks) {
      const outcomes = after.attempts.filter((attempt) => attempt.task_id === task.id);
      expect(outcomes.map((attempt) => [attempt.number, attempt.outcome])).toEqual([
        [1, "interrupted"],
        [2, "succeeded"],
      ]);
    }
    expect(marks(dir, "finished-")).toEqual(["finished-1", "finished-2"]);
  });

  it("twice: SIGKILLs a task that ignores SIGTERM once --grace runs out", async () => {
    const dir = tempDir();
    writeFile(
      dir,
      "stubborn.py",
      `import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open("stubborn.pid", "w") as f:
    f.write(str(os.getpid()))
time.sleep(60)
`,
    );
    const config = writeFile(
      dir,
      "sweep.yaml",
      "command: python3 stubborn.py\nretries: 0\nstubborn:\n  defaults: {x: 1}\n",
    );
    const cli = startCli(["run", config, "--slots", "1", "--grace", "1"], { cwd: dir });
    const done = collect(cli);
    await waitUntil(() => existsSync(join(dir, "stubborn.pid")), 15_000, "the task to start", done);
    const pid = Number(readFileSync(join(dir, "stubborn.pid"), "utf8"));
    expect(isAlive(pid)).toBe(true);

    cli.kill("SIGINT");
    await new Promise((resolve) => setTimeout(resolve, 100));
    const secondAt = Date.now();
    cli.kill("SIGINT");
    const result = await done;
    const took = Date.now() - secondAt;
    expectCode(result, 130);
    // SIGTERM did nothing; SIGKILL came after the 1 s grace period — not before, not 60 s later.
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(8000);
    await waitUntil(() => !isAlive(pid), 2000, `the stubborn task (pid ${pid}) to be gone`);

    const { tasks, attempts } = ledger(dir);
    expect(tasks).toMatchObject([{ state: "pending", attempts: 0 }]);
    expect(attempts).toMatchObject([{ outcome: "interrupted" }]);
  });

  it("while the machine is still being probed: the run stops before starting anything", async () => {
    const dir = tempDir();
    pythonTask(dir, 0);
    const config = sweep(dir, [1, 2]);
    // A slow nvidia-smi (a hung driver can take seconds) that reports no GPUs.
    const bin = join(dir, "bin");
    mkdirSync(bin);
    writeFile(
      bin,
      "nvidia-smi",
      `#!/bin/sh\ntouch "${join(dir, "probing")}"\nsleep 1.5\necho "No devices were found"\nexit 6\n`,
    );
    chmodSync(join(bin, "nvidia-smi"), 0o755);
    const cli = startCli(["run", config, "--slots", "2"], {
      cwd: dir,
      env: { PATH: `${bin}${delimiter}${process.env.PATH ?? ""}` },
    });
    const done = collect(cli);
    await waitUntil(() => existsSync(join(dir, "probing")), 15_000, "the GPU probe", done);
    cli.kill("SIGINT");
    const result = await done;
    expectCode(result, 130);
    expect(marks(dir, "started-")).toEqual([]);
    expect(ledger(dir).tasks.map((task) => task.state)).toEqual(["pending", "pending"]);
  });
});
