/**
 * End to end: how `labsweep run` executes tasks — the environment and files a task gets, its log,
 * retries with exponential backoff, final failures in failed_experiments.csv, timeouts that kill
 * the whole process group, bad result files, and slots from (fake) nvidia-smi.
 * Run `npm run build` first: these tests run bin/labsweep.js, which runs dist/.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { describe, expect, it } from "vitest";
import { Database } from "../src/ledger/sqliteDriver.js";
import { type CliResult, collect, runCli, startCli, tempDir, writeFile } from "./helpers/cli.js";
import { type FakeGpu, fakeGpuEnv } from "./helpers/fakeGpus.js";

interface AttemptRow {
  id: number;
  task_id: number;
  number: number;
  started_at: number;
  ended_at: number | null;
  outcome: string | null;
  exit_code: number | null;
  signal: string | null;
  error: string | null;
  pid: number | null;
  log_path: string | null;
}

interface TaskRow {
  id: number;
  state: string;
  attempts: number;
  params_json: string;
}

/** Reads the ledger of `<dir>/.labsweep` directly (after the run has ended). */
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

function run(dir: string, args: string[] = [], env?: NodeJS.ProcessEnv): Promise<CliResult> {
  return runCli(["run", join(dir, "sweep.yaml"), ...args], { cwd: dir, env });
}

function expectCode(result: CliResult, code: number): void {
  expect(result.code, `labsweep exited ${result.code}:\n${result.stderr}`).toBe(code);
}

function readCsv(path: string): Record<string, string>[] {
  const [header = [], ...rows] = parse(readFileSync(path, "utf8")) as string[][];
  return rows.map((cells) => Object.fromEntries(header.map((name, index) => [name, cells[index] ?? ""])));
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

async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

/** The largest number of [start, end] intervals open at one moment. */
function maxOverlap(intervals: Array<{ start: number; end: number }>): number {
  let best = 0;
  for (const { start } of intervals) {
    const open = intervals.filter((other) => other.start <= start && other.end > start).length;
    best = Math.max(best, open);
  }
  return best;
}

describe("task environment and files", () => {
  it("gives each task its id, params, config file, result file, output dir, GPU and log", async () => {
    const dir = tempDir();
    writeFile(
      dir,
      "task.py",
      `import json, os, sys
x = sys.argv[1]
print("hello on stdout", flush=True)
print("hello on stderr", file=sys.stderr, flush=True)
config = json.load(open(os.environ["LABSWEEP_CONFIG_FILE"]))
with open(f"env-{x}.json", "w") as f:
    json.dump({"env": dict(os.environ), "config": config, "pid": os.getpid(), "pgrp": os.getpgrp(), "sid": os.getsid(0)}, f)
with open(os.environ["LABSWEEP_RESULT_FILE"], "w") as f:
    json.dump({"acc": 0.5 + int(x) / 10}, f)
`,
    );
    writeFile(
      dir,
      "sweep.yaml",
      `command: python3 task.py {x}
defaults:
  lr: 0.1
train:
  output_dir: out/{x}
  combinations:
    - x: [1, 2]
`,
    );
    const cli = startCli(["run", join(dir, "sweep.yaml"), "--slots", "1"], {
      cwd: dir,
      env: fakeGpuEnv([{ memoryFreeMiB: 20_000 }]),
    });
    const result = await collect(cli);
    expectCode(result, 0);
    const { tasks, attempts } = ledger(dir);
    expect(tasks).toHaveLength(2);
    for (const task of tasks) {
      const params = JSON.parse(task.params_json) as { x: number; lr: number };
      const dump = JSON.parse(readFileSync(join(dir, `env-${params.x}.json`), "utf8")) as {
        env: Record<string, string>;
        config: unknown;
        pid: number;
        pgrp: number;
        sid: number;
      };
      const env = dump.env;
      const attempt = attempts.find((row) => row.task_id === task.id) as AttemptRow;
      expect(env.LABSWEEP_TASK_ID).toBe(String(task.id));
      expect(JSON.parse(env.LABSWEEP_PARAMS as string)).toEqual({ lr: 0.1, x: params.x });
      expect(env.LABSWEEP_OUTPUT_DIR).toBe(join(dir, "out", String(params.x)));
      expect(env.CUDA_VISIBLE_DEVICES).toBe("0");
      expect(env.LABSWEEP_RESULT_FILE?.startsWith(join(dir, ".labsweep"))).toBe(true);

      // The config file as the task read it while it ran (the agent rewrites it for later attempts).
      expect(dump.config).toMatchObject({
        task_id: task.id,
        params: { lr: 0.1, x: params.x },
        command: `python3 task.py ${params.x}`,
        cwd: dir,
        config_file: join(dir, "sweep.yaml"),
        phases: ["train"],
        output_dir: join(dir, "out", String(params.x)),
        retries: 3,
        backoff_ms: 1000,
      });

      // Its own process group and session, led by the process the ledger recorded; not labsweep's.
      expect(dump.pgrp).toBe(attempt.pid);
      expect(dump.sid).toBe(dump.pgrp);
      expect(dump.pgrp).not.toBe(cli.pid);

      // stdout and stderr both land in the attempt's log.
      const log = readFileSync(attempt.log_path as string, "utf8");
      expect(log).toContain("hello on stdout");
      expect(log).toContain("hello on stderr");

      // The metrics written to LABSWEEP_RESULT_FILE become the output dir's result row.
      const rows = readCsv(join(dir, "out", String(params.x), "final_results.csv"));
      expect(rows).toHaveLength(1);
      expect(Number(rows[0]?.acc)).toBeCloseTo(0.5 + params.x / 10);
    }
  });

  it("counts tasks held ahead of a slot as pending in its progress lines, never as running", async () => {
    const dir = tempDir();
    const values = Array.from({ length: 200 }, (_, i) => i).join(", ");
    writeFile(
      dir,
      "sweep.yaml",
      `command: sleep 0.01\nshort:\n  output_dir: out\n  combinations:\n    - x: [${values}]\n`,
    );
    const result = await runCli(["run", "sweep.yaml", "--slots", "1", "--progress-every", "0.01"], {
      cwd: dir,
    });
    expectCode(result, 0);
    const lines = result.stderr.split("\n").filter((line) => / running · /.test(line));
    expect(lines.length).toBeGreaterThan(3);
    // One slot: one running, and for a moment two while a finished task's report is on its way.
    // Without counting held tasks as pending, up to five (the agent holds 50 ms of 10 ms tasks).
    for (const line of lines) expect(Number(/(\d+) running/.exec(line)?.[1])).toBeLessThanOrEqual(2);
    // The agent did hold tasks ahead (chained in the launcher) while they ran.
    const { attempts } = ledger(dir);
    const ahead = attempts.filter(
      (attempt, i) => i > 0 && attempt.started_at < (attempts[i - 1]?.ended_at ?? 0),
    );
    expect(ahead.length).toBeGreaterThan(50);
  });
});

describe("retries and failures", () => {
  it("retries a failing task with exponentially growing gaps until it succeeds", async () => {
    const dir = tempDir();
    writeFile(
      dir,
      "task.sh",
      `n=$(cat counter 2>/dev/null || echo 0)
n=$((n + 1))
echo $n > counter
echo "attempt $n"
[ $n -ge 3 ] || exit 1
echo '{"tries": '$n'}' > "$LABSWEEP_RESULT_FILE"
`,
    );
    writeFile(
      dir,
      "sweep.yaml",
      "command: sh task.sh\nretries: 3\nbackoff: 0.3s\nflaky:\n  defaults: {x: 1}\n",
    );
    const result = await run(dir, ["--slots", "1"]);
    expectCode(result, 0);
    expect(readFileSync(join(dir, "counter"), "utf8").trim()).toBe("3");

    const { tasks, attempts } = ledger(dir);
    expect(tasks).toMatchObject([{ state: "succeeded", attempts: 2 }]);
    expect(attempts.map((attempt) => [attempt.number, attempt.outcome, attempt.exit_code])).toEqual([
      [1, "failed", 1],
      [2, "failed", 1],
      [3, "succeeded", null],
    ]);
    const [first, second, third] = attempts as [AttemptRow, AttemptRow, AttemptRow];
    const gap1 = second.started_at - (first.ended_at as number);
    const gap2 = third.started_at - (second.ended_at as number);
    // First delay is `backoff`, then it doubles.
    expect(gap1).toBeGreaterThanOrEqual(300);
    expect(gap2).toBeGreaterThanOrEqual(600);
    expect(gap2).toBeGreaterThan(gap1);
    // Each attempt has its own log.
    expect(readFileSync(first.log_path as string, "utf8")).toContain("attempt 1");
    expect(readFileSync(third.log_path as string, "utf8")).toContain("attempt 3");
  });

  it("records a task that used up its retries in failed_experiments.csv, and `retry --failed` reruns it", async () => {
    const dir = tempDir();
    writeFile(
      dir,
      "task.sh",
      `for i in $(seq 1 30); do echo "line $i of attempt $LABSWEEP_ATTEMPT_ID"; done
echo "an error on stderr" >&2
[ -e fixed ] || exit 7
echo '{"ok": 1}' > "$LABSWEEP_RESULT_FILE"
`,
    );
    writeFile(
      dir,
      "sweep.yaml",
      "command: sh task.sh {x}\nretries: 1\nbackoff: 0.1s\nbroken:\n  combinations:\n    - x: [5]\n",
    );
    const failed = await run(dir, ["--slots", "1"]);
    expectCode(failed, 1);
    expect(failed.stderr).toContain("failed_experiments.csv");

    const { tasks, attempts } = ledger(dir);
    expect(tasks).toMatchObject([{ state: "failed", attempts: 2 }]);
    expect(attempts).toHaveLength(2);
    const last = attempts[1] as AttemptRow;

    const rows = readCsv(join(dir, ".labsweep", "failed_experiments.csv"));
    expect(rows).toHaveLength(1);
    const row = rows[0] as Record<string, string>;
    expect(Number.isNaN(Date.parse(row.timestamp as string))).toBe(false);
    expect(row).toMatchObject({
      task_id: String(tasks[0]?.id),
      phases: "broken",
      attempt: "2",
      exit_code: "7",
      signal: "",
    });
    expect(JSON.parse(row.params as string)).toEqual({ x: 5 });
    // The last 20 lines of the final attempt's log: stdout and stderr, in order.
    const expected = [
      ...Array.from({ length: 19 }, (_, index) => `line ${index + 12} of attempt ${last.id}`),
      "an error on stderr",
    ];
    expect(row.last_log_lines?.split("\n")).toEqual(expected);

    // Running again changes nothing: the task is failed, not pending.
    const again = await run(dir, ["--slots", "1"]);
    expectCode(again, 1);
    expect(ledger(dir).attempts).toHaveLength(2);

    writeFile(dir, "fixed", "");
    const retried = await runCli(["retry", join(dir, "sweep.yaml"), "--failed"], { cwd: dir });
    expectCode(retried, 0);
    expect(retried.stdout).toMatch(/^1 failed task will run again/);
    const fixed = await run(dir, ["--slots", "1"]);
    expectCode(fixed, 0);
    const after = ledger(dir);
    expect(after.tasks).toMatchObject([{ state: "succeeded" }]);
    expect(after.attempts.map((attempt) => attempt.outcome)).toEqual(["failed", "failed", "succeeded"]);
    // Nothing new in the failure log.
    expect(readCsv(join(dir, ".labsweep", "failed_experiments.csv"))).toHaveLength(1);
  });

  it("kills what a task left running in its group once it exits", async () => {
    const dir = tempDir();
    // Each task leaves a sleep behind in its process group and exits at once: a stray loader.
    writeFile(
      dir,
      "sweep.yaml",
      `command: "sh -c 'sleep 100 & echo $! > stray-{x}; exit 0'"
retries: 0
strays:
  combinations:
    - x: [1, 2, 3, 4, 5, 6]
`,
    );
    const result = await run(dir, ["--slots", "2"]);
    expectCode(result, 0);
    for (const x of [1, 2, 3, 4, 5, 6]) {
      const stray = Number(readFileSync(join(dir, `stray-${x}`), "utf8").trim());
      expect(stray).toBeGreaterThan(0);
      expect(await waitUntil(() => !isAlive(stray), 3000), `sleep ${stray} survived`).toBe(true);
    }
    expect(ledger(dir).tasks.every((task) => task.state === "succeeded")).toBe(true);
  });

  it("kills the whole process group on a timeout, grandchildren included", async () => {
    const dir = tempDir();
    writeFile(
      dir,
      "sweep.yaml",
      `command: "sh -c 'sleep 100 & echo $! > pidfile; wait'"
timeout: 1s
retries: 0
slow:
  defaults: {x: 1}
`,
    );
    const started = Date.now();
    const result = await run(dir, ["--slots", "1", "--grace", "1"]);
    expectCode(result, 1);
    // Not the 100 s of the sleep: the timeout, plus at most the grace period and some slack.
    expect(Date.now() - started).toBeLessThan(15_000);

    const grandchild = Number(readFileSync(join(dir, "pidfile"), "utf8").trim());
    expect(grandchild).toBeGreaterThan(0);
    expect(await waitUntil(() => !isAlive(grandchild), 3000), `sleep ${grandchild} survived`).toBe(true);

    const { tasks, attempts } = ledger(dir);
    expect(tasks).toMatchObject([{ state: "failed", attempts: 1 }]);
    expect(attempts).toMatchObject([{ outcome: "timeout", error: "timed out after 1.0 s" }]);
    const rows = readCsv(join(dir, ".labsweep", "failed_experiments.csv"));
    expect(rows).toMatchObject([{ error: "timed out after 1.0 s", attempt: "1" }]);
  });

  it("fails a task whose result file is not valid JSON, saying so", async () => {
    const dir = tempDir();
    writeFile(dir, "task.sh", `echo '{"acc": 0.9,' > "$LABSWEEP_RESULT_FILE"\n`);
    writeFile(dir, "sweep.yaml", "command: sh task.sh\nretries: 0\nbad_result:\n  defaults: {x: 1}\n");
    const result = await run(dir, ["--slots", "1"]);
    expectCode(result, 1);
    const { tasks, attempts } = ledger(dir);
    expect(tasks).toMatchObject([{ state: "failed" }]);
    expect(attempts).toMatchObject([{ outcome: "failed", exit_code: 0 }]);
    expect(attempts[0]?.error).toMatch(/^LABSWEEP_RESULT_FILE is not valid JSON \(.+\): \{"acc": 0\.9,/);

    const status = await runCli(["status", join(dir, "sweep.yaml"), "--json"], { cwd: dir });
    expectCode(status, 0);
    const report = JSON.parse(status.stdout) as { failed: number; recentFailures: Array<{ error: string }> };
    expect(report.failed).toBe(1);
    expect(report.recentFailures[0]?.error).toContain("not valid JSON");
    const rows = readCsv(join(dir, ".labsweep", "failed_experiments.csv"));
    expect(rows[0]?.error).toContain("LABSWEEP_RESULT_FILE is not valid JSON");
    expect(rows[0]?.exit_code).toBe("0");
    // No result row for a failed task.
    expect(existsSync(join(dir, "results", "bad_result", "final_results.csv"))).toBe(false);
  });
});

describe("slots from nvidia-smi", () => {
  /** A sweep of `count` tasks that each record when they ran and which GPUs they saw. */
  function gpuSweep(dir: string, count: number, seconds: number): void {
    writeFile(
      dir,
      "task.py",
      `import json, os, sys, time
start = time.time()
time.sleep(${seconds})
with open(f"ran-{sys.argv[1]}.json", "w") as f:
    json.dump({"start": start, "end": time.time(), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}, f)
`,
    );
    const values = Array.from({ length: count }, (_, index) => index + 1).join(", ");
    writeFile(
      dir,
      "sweep.yaml",
      `command: python3 task.py {x}\ngpu_phase:\n  combinations:\n    - x: [${values}]\n`,
    );
  }

  function runs(dir: string, count: number): Array<{ start: number; end: number; cuda: string | undefined }> {
    return Array.from({ length: count }, (_, index) =>
      JSON.parse(readFileSync(join(dir, `ran-${index + 1}.json`), "utf8")),
    );
  }

  // GPU 1 is busy with someone else's job: only 2 GB free.
  const gpus: FakeGpu[] = [{ memoryFreeMiB: 20_000 }, { memoryFreeMiB: 2048 }, { memoryFreeMiB: 24_000 }];

  it("gives one slot to each GPU with at least 4 GB free, and pins tasks to those GPUs", async () => {
    const dir = tempDir();
    gpuSweep(dir, 6, 0.5);
    const result = await run(dir, [], fakeGpuEnv(gpus));
    expectCode(result, 0);
    const ran = runs(dir, 6);
    expect(new Set(ran.map((task) => task.cuda))).toEqual(new Set(["0", "2"]));
    expect(maxOverlap(ran)).toBe(2);
    // Tasks held ahead behind each running one (short tasks) never share a whole GPU.
    for (const gpu of ["0", "2"]) expect(maxOverlap(ran.filter((task) => task.cuda === gpu))).toBe(1);
  });

  it("--slots N caps tasks at once, never past one whole-GPU task per good GPU", async () => {
    const dir = tempDir();
    gpuSweep(dir, 6, 0.8);
    const result = await run(dir, ["--slots", "3"], fakeGpuEnv(gpus));
    expectCode(result, 0);
    const ran = runs(dir, 6);
    for (const task of ran) expect(["0", "2"]).toContain(task.cuda);
    expect(maxOverlap(ran)).toBe(2);
  });

  it("runs --slots N fractional tasks at once, on the good GPUs", async () => {
    const dir = tempDir();
    gpuSweep(dir, 6, 0.8);
    writeFile(
      dir,
      "sweep.yaml",
      `${readFileSync(join(dir, "sweep.yaml"), "utf8")}  resources: {gpus: 0.5}\n`,
    );
    const result = await run(dir, ["--slots", "3"], fakeGpuEnv(gpus));
    expectCode(result, 0);
    const ran = runs(dir, 6);
    for (const task of ran) expect(["0", "2"]).toContain(task.cuda);
    expect(maxOverlap(ran)).toBe(3);
    for (const gpu of ["0", "2"])
      expect(maxOverlap(ran.filter((task) => task.cuda === gpu))).toBeLessThanOrEqual(2);
  });

  it("hides every GPU from CPU slots when no GPU has enough free memory", async () => {
    const dir = tempDir();
    gpuSweep(dir, 2, 0);
    const busy: FakeGpu[] = [{ memoryFreeMiB: 1024 }, { memoryFreeMiB: 3000 }];
    const result = await run(dir, ["--slots", "2"], fakeGpuEnv(busy));
    expectCode(result, 0);
    for (const task of runs(dir, 2)) expect(task.cuda).toBe("");
  });
});
