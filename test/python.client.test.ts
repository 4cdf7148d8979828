/**
 * The Python client (`python/labsweep`) in real python3 processes, with the environment the
 * agent gives a task set by the test: buffered reports, flattened and atomic results, stops by
 * file and by signal, and every call working outside labsweep.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { REPO_ROOT, tempDir } from "./helpers/cli.js";

const CLIENT_DIR = join(REPO_ROOT, "python");

interface PythonExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

interface Python {
  child: ChildProcess;
  exit: Promise<PythonExit>;
  /** Resolves once stdout holds `text`. */
  printed(text: string): Promise<void>;
}

const children = new Set<ChildProcess>();

afterEach(() => {
  for (const child of children) {
    if (child.pid && child.exitCode === null && child.signalCode === null) process.kill(child.pid, "SIGKILL");
  }
  children.clear();
});

/** The environment without any LABSWEEP_* variable of the test runner's own. */
function baseEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith("LABSWEEP_")) env[key] = value;
  return { ...env, PYTHONPATH: CLIENT_DIR };
}

type TaskEnv = Record<string, string> &
  Record<
    "LABSWEEP_EVENTS_FILE" | "LABSWEEP_RESULT_FILE" | "LABSWEEP_STOP_FILE" | "LABSWEEP_CHECKPOINT_DIR",
    string
  >;

/** What the agent sets for an attempt, with its files in `dir` (the agent creates neither file). */
function taskEnv(dir: string, extra: Record<string, string> = {}): TaskEnv {
  const events = join(dir, "attempt-1.events.jsonl");
  const result = join(dir, "attempt-1.result.json");
  return {
    LABSWEEP_TASK_ID: "7",
    LABSWEEP_ATTEMPT_ID: "31",
    LABSWEEP_PARAMS: JSON.stringify({ lr: 0.1, seed: 42, name: "a b" }),
    LABSWEEP_EVENTS_FILE: events,
    LABSWEEP_RESULT_FILE: result,
    LABSWEEP_STOP_FILE: join(dir, "attempt-1.stop"),
    LABSWEEP_STOP_SIGNAL: "SIGTERM",
    LABSWEEP_CHECKPOINT_DIR: join(dir, "checkpoints", "sig"),
    ...extra,
  };
}

function python(script: string, env: Record<string, string>, cwd: string): Python {
  const child = spawn("python3", ["-c", script], {
    cwd,
    env: { ...baseEnv(), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  let stdout = "";
  let stderr = "";
  const waiting: { text: string; resolve: () => void }[] = [];
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
    for (const wait of waiting.filter((w) => stdout.includes(w.text))) wait.resolve();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exit = new Promise<PythonExit>((resolve) => {
    child.once("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return {
    child,
    exit,
    printed: (text) =>
      new Promise<void>((resolve, reject) => {
        if (stdout.includes(text)) return resolve();
        waiting.push({ text, resolve });
        void exit.then((end) =>
          reject(new Error(`python ended before printing ${text}: ${JSON.stringify(end)}`)),
        );
      }),
  };
}

async function runPython(script: string, env: Record<string, string>, cwd: string): Promise<PythonExit> {
  const end = await python(script, env, cwd).exit;
  return end;
}

function lines(path: string): Record<string, unknown>[] {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

function expectOk(end: PythonExit): void {
  expect(end.code, end.stderr).toBe(0);
}

describe("the Python client under labsweep", () => {
  it("gives the task's params, id and attempt", async () => {
    const dir = tempDir();
    const end = await runPython(
      "import labsweep, json; print(json.dumps([labsweep.params(), labsweep.task_id(), labsweep.attempt()]))",
      taskEnv(dir),
      dir,
    );
    expectOk(end);
    expect(JSON.parse(end.stdout)).toEqual([{ lr: 0.1, seed: 42, name: "a b" }, 7, 31]);
  });

  it("buffers reports until result(), then appends them as whole JSON lines", async () => {
    const dir = tempDir();
    const env = taskEnv(dir);
    const script = `
import os, labsweep
labsweep.FLUSH_INTERVAL = 3600  # no write by time in this test
for step in range(3):
    labsweep.report(step, loss=1.0 / (step + 1), val={"acc": step / 10, "top": {"k5": 1}})
print(os.path.exists(os.environ["LABSWEEP_EVENTS_FILE"]))
labsweep.result(acc=0.3)
print(os.path.getsize(os.environ["LABSWEEP_EVENTS_FILE"]) > 0)
`;
    const end = await runPython(script, env, dir);
    expectOk(end);
    // Nothing written yet: the file does not even exist (the agent creates none).
    expect(end.stdout.split("\n").slice(0, 2)).toEqual(["False", "True"]);
    const reports = lines(env.LABSWEEP_EVENTS_FILE);
    expect(reports.map((line) => line.step)).toEqual([0, 1, 2]);
    expect(reports[1]).toMatchObject({
      type: "report",
      step: 1,
      metrics: { loss: 0.5, "val.acc": 0.1, "val.top.k5": 1 },
    });
    const time = reports[1]?.time;
    expect(typeof time).toBe("number");
    expect(Math.abs((time as number) - Date.now() / 1000)).toBeLessThan(600);
    expect(readFileSync(env.LABSWEEP_EVENTS_FILE, "utf8").endsWith("\n")).toBe(true);
  });

  it("writes buffered reports at exit, and at once when the interval has passed", async () => {
    const dir = tempDir();
    const env = taskEnv(dir);
    const script = `
import os, labsweep
labsweep.report(0, loss=2.0)
labsweep.FLUSH_INTERVAL = 0  # every report is due
labsweep.report(1, loss=1.0)
print(os.path.getsize(os.environ["LABSWEEP_EVENTS_FILE"]) > 0)
labsweep.FLUSH_INTERVAL = 3600
labsweep.report(2, loss=0.5)
`;
    const end = await runPython(script, env, dir);
    expectOk(end);
    expect(end.stdout.trim()).toBe("True");
    expect(lines(env.LABSWEEP_EVENTS_FILE).map((line) => line.metrics)).toEqual([
      { loss: 2 },
      { loss: 1 },
      { loss: 0.5 },
    ]);
  });

  it("keeps finite numbers only, warning once per metric, and refuses oversized or bad reports", async () => {
    const dir = tempDir();
    const env = taskEnv(dir);
    const script = `
import labsweep
class Scalar:  # a numpy or torch scalar
    def item(self): return 0.25
for step in range(2):
    labsweep.report(step, ok=1, nan=float("nan"), inf=float("-inf"), text="x", flag=True, huge=10**400, np=Scalar())
labsweep.report(2, step=5)  # a metric may be called step
bad = ["labsweep.report(-1, x=1)", "labsweep.report(1.5, x=1)", "labsweep.report(3, **{'a.b': 1, 'a': {'b': 2}})",
       "labsweep.report(4, **{'metric_with_a_long_name_%d' % i: 1.0 for i in range(3000)})"]
for call in bad:
    try:
        exec(call)
    except (TypeError, ValueError) as error:
        print(type(error).__name__, error)
`;
    const end = await runPython(script, env, dir);
    expectOk(end);
    const reports = lines(env.LABSWEEP_EVENTS_FILE);
    expect(reports.map((line) => line.metrics)).toEqual([
      { ok: 1, np: 0.25 },
      { ok: 1, np: 0.25 },
      { step: 5 },
    ]);
    for (const name of ["nan", "inf", "text", "flag", "huge"]) {
      expect(end.stderr.split(`'${name}'`).length - 1, end.stderr).toBe(1);
    }
    expect(end.stdout).toMatch(/ValueError report step must be a non-negative integer, got -1/);
    expect(end.stdout).toMatch(/TypeError .*float/);
    expect(end.stdout).toMatch(/ValueError metric "a.b" is given twice \(once nested, once dotted\)/);
    expect(end.stdout).toMatch(/ValueError report at step 4 is \d+ bytes as JSON; the limit is 65536/);
  });

  it("flattens the result and replaces the result file atomically, keeping it private", async () => {
    const dir = tempDir();
    const env = taskEnv(dir);
    writeFileSync(env.LABSWEEP_RESULT_FILE, '{"from": "an earlier call"}\n', { mode: 0o600 });
    const before = statSync(env.LABSWEEP_RESULT_FILE).ino;
    const script = `
import labsweep
labsweep.result(acc=0.5, val={"acc": 0.25, "loss": {"mean": 1}}, diverged=float("inf"), note="ok", tags=[1, 2])
`;
    const end = await runPython(script, env, dir);
    expectOk(end);
    expect(JSON.parse(readFileSync(env.LABSWEEP_RESULT_FILE, "utf8"))).toEqual({
      acc: 0.5,
      "val.acc": 0.25,
      "val.loss.mean": 1,
      diverged: "inf",
      note: "ok",
      tags: [1, 2],
    });
    // Replaced by a rename (a new inode), not written in place; no temp file is left behind.
    expect(statSync(env.LABSWEEP_RESULT_FILE).ino).not.toBe(before);
    expect(statSync(env.LABSWEEP_RESULT_FILE).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir).sort()).toEqual(["attempt-1.result.json"]);
  });

  it("creates the result and events files 0600 itself, under any umask (the agent makes neither)", async () => {
    const dir = tempDir();
    const env = taskEnv(dir);
    const script =
      "import os\nos.umask(0)\nimport labsweep\nlabsweep.report(0, loss=1.0)\nlabsweep.result(acc=1)";
    const end = await runPython(script, env, dir);
    expectOk(end);
    expect(JSON.parse(readFileSync(env.LABSWEEP_RESULT_FILE, "utf8"))).toEqual({ acc: 1 });
    expect(lines(env.LABSWEEP_EVENTS_FILE).map((line) => line.metrics)).toEqual([{ loss: 1 }]);
    expect(statSync(env.LABSWEEP_RESULT_FILE).mode & 0o777).toBe(0o600);
    expect(statSync(env.LABSWEEP_EVENTS_FILE).mode & 0o777).toBe(0o600);
  });

  it("refuses a result with one name reached twice, writing nothing", async () => {
    const dir = tempDir();
    const env = taskEnv(dir);
    writeFileSync(env.LABSWEEP_RESULT_FILE, '{"earlier": 1}\n');
    const end = await runPython(
      'import labsweep\nlabsweep.result(**{"val.acc": 1, "val": {"acc": 2}})',
      env,
      dir,
    );
    expect(end.code).toBe(1);
    expect(end.stderr).toMatch(/ValueError: metric "val.acc" is given twice \(once nested, once dotted\)/);
    expect(readFileSync(env.LABSWEEP_RESULT_FILE, "utf8")).toBe('{"earlier": 1}\n');
  });

  it("gives a checkpoint dir that exists", async () => {
    const dir = tempDir();
    const env = taskEnv(dir);
    const end = await runPython("import labsweep; print(labsweep.checkpoint_dir())", env, dir);
    expectOk(end);
    expect(end.stdout.trim()).toBe(env.LABSWEEP_CHECKPOINT_DIR);
    expect(statSync(env.LABSWEEP_CHECKPOINT_DIR).isDirectory()).toBe(true);
  });

  it("turns should_stop() true once the stop file exists, writing buffered reports", async () => {
    const dir = tempDir();
    const env = taskEnv(dir);
    const script = `
import time, labsweep
labsweep.FLUSH_INTERVAL = 3600
labsweep.report(0, loss=1.0)
print("listening", labsweep.should_stop(), flush=True)
while not labsweep.should_stop():
    time.sleep(0.01)
print("stopping")
`;
    const task = python(script, env, dir);
    await task.printed("listening False");
    expect(existsSync(env.LABSWEEP_EVENTS_FILE)).toBe(false);
    writeFileSync(env.LABSWEEP_STOP_FILE, "");
    const end = await task.exit;
    expectOk(end);
    expect(end.stdout).toContain("stopping");
    expect(lines(env.LABSWEEP_EVENTS_FILE).map((line) => line.step)).toEqual([0]);
  });

  it("lets a listening script catch the stop signal and finish its work", async () => {
    const dir = tempDir();
    const env = taskEnv(dir);
    const script = `
import time, labsweep
labsweep.should_stop()
print("ready", flush=True)
while not labsweep.should_stop():
    time.sleep(0.01)
labsweep.result(stopped=1)
`;
    const task = python(script, env, dir);
    await task.printed("ready");
    process.kill(task.child.pid as number, "SIGTERM");
    const end = await task.exit;
    expectOk(end);
    expect(JSON.parse(readFileSync(env.LABSWEEP_RESULT_FILE, "utf8"))).toEqual({ stopped: 1 });
  });

  it("lets a script that never listens die by the signal, as without the client", async () => {
    const dir = tempDir();
    const env = taskEnv(dir);
    const script = `
import time, labsweep
labsweep.FLUSH_INTERVAL = 3600
labsweep.report(0, loss=1.0)
print("ready", flush=True)
time.sleep(60)
print("survived", flush=True)
`;
    const task = python(script, env, dir);
    await task.printed("ready");
    process.kill(task.child.pid as number, "SIGTERM");
    const end = await task.exit;
    expect(end.signal).toBe("SIGTERM");
    expect(end.stdout).not.toContain("survived");
    // What it reported before dying is not lost with it.
    expect(lines(env.LABSWEEP_EVENTS_FILE).map((line) => line.step)).toEqual([0]);
  });

  it("listens for LABSWEEP_STOP_SIGNAL, not SIGTERM, when it names another", async () => {
    const dir = tempDir();
    const env = taskEnv(dir, { LABSWEEP_STOP_SIGNAL: "SIGUSR1" });
    const script = `
import signal, time, labsweep
print("ready", labsweep.should_stop(), signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, flush=True)
while not labsweep.should_stop():
    time.sleep(0.01)
print("stopping", flush=True)
`;
    const task = python(script, env, dir);
    await task.printed("ready False True");
    process.kill(task.child.pid as number, "SIGUSR1");
    const end = await task.exit;
    expectOk(end);
    expect(end.stdout).toContain("stopping");
  });

  it("leaves a signal handler the script installed first alone", async () => {
    const dir = tempDir();
    const script = `
import signal, sys
mine = lambda signum, frame: None
signal.signal(signal.SIGTERM, mine)
import labsweep
print(signal.getsignal(signal.SIGTERM) is mine)
`;
    const end = await runPython(script, taskEnv(dir), dir);
    expectOk(end);
    expect(end.stdout.trim()).toBe("True");
  });
});

describe("the Python client run by hand", () => {
  it("works with no labsweep variables: {} params, no events, result on stderr, ./checkpoints", async () => {
    const dir = tempDir();
    const script = `
import labsweep
print(labsweep.params(), labsweep.task_id(), labsweep.attempt(), labsweep.should_stop())
labsweep.report(0, loss=1.0)
print(labsweep.checkpoint_dir())
labsweep.result(acc=0.5, val={"acc": 0.25})
`;
    const end = await runPython(script, {}, dir);
    expectOk(end);
    expect(end.stdout).toBe("{} None None False\ncheckpoints\n");
    expect(end.stderr).toBe('{"acc": 0.5, "val.acc": 0.25}\n');
    expect(readdirSync(dir)).toEqual(["checkpoints"]);
  });

  it("writes reports and the result where LABSWEEP_EVENTS_FILE and LABSWEEP_RESULT_FILE point", async () => {
    const dir = tempDir();
    const env = {
      LABSWEEP_EVENTS_FILE: join(dir, "events.jsonl"),
      LABSWEEP_RESULT_FILE: join(dir, "result.json"),
      LABSWEEP_PARAMS: '{"width": 8}',
    };
    const end = await runPython(
      "import labsweep\nlabsweep.report(0, loss=1.0)\nlabsweep.result(width=labsweep.params()['width'])",
      env,
      dir,
    );
    expectOk(end);
    expect(lines(env.LABSWEEP_EVENTS_FILE).map((line) => line.metrics)).toEqual([{ loss: 1 }]);
    expect(JSON.parse(readFileSync(env.LABSWEEP_RESULT_FILE, "utf8"))).toEqual({ width: 8 });
    expect(statSync(env.LABSWEEP_EVENTS_FILE).mode & 0o777).toBe(0o600);
  });

  it("turns should_stop() true on the first Ctrl-C of a listening script; the second interrupts", async () => {
    const dir = tempDir();
    const script = `
import time, labsweep
labsweep.should_stop()
print("ready", flush=True)
while not labsweep.should_stop():
    time.sleep(0.01)
try:
    print("stopping", flush=True)
    time.sleep(60)
except KeyboardInterrupt:
    print("interrupted", flush=True)
`;
    const task = python(script, {}, dir);
    await task.printed("ready");
    process.kill(task.child.pid as number, "SIGINT");
    await task.printed("stopping\n");
    process.kill(task.child.pid as number, "SIGINT");
    const end = await task.exit;
    expectOk(end);
    expect(end.stdout).toBe("ready\nstopping\ninterrupted\n");
  });

  it("leaves Ctrl-C and SIGTERM as they are for a script that does not listen", async () => {
    const dir = tempDir();
    const script = `
import signal, time, labsweep
print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, signal.getsignal(signal.SIGINT) is signal.default_int_handler, flush=True)
time.sleep(60)
`;
    const task = python(script, {}, dir);
    await task.printed("True True");
    process.kill(task.child.pid as number, "SIGTERM");
    const end = await task.exit;
    expect(end.signal).toBe("SIGTERM");
    expect(existsSync(join(dir, "checkpoints"))).toBe(false);
  });
});
