/**
 * End to end: how the agent stops a task — the attempt's stop file, the phase's stop_signal,
 * SIGKILL after stop_grace — and what each stop is recorded as: preempted when the agent itself
 * was SIGTERMed (as SLURM does) and the task left a checkpoint (no retry spent, resumed on its
 * next attempt from the same checkpoint dir, even on another agent sharing the root), timeout,
 * and hung after hang_timeout without output, events or GPU use (a retry spent).
 * Run `npm run build` first: these tests run bin/labsweep.js, which runs dist/.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Database } from "../src/ledger/sqliteDriver.js";
import { type CliResult, runCli, startCli, tempDir, type Watched, watch, writeFile } from "./helpers/cli.js";
import { fakeGpuEnv } from "./helpers/fakeGpus.js";

interface AttemptRow {
  task_id: number;
  number: number;
  outcome: string | null;
  signal: string | null;
  error: string | null;
}

function ledger(stateDir: string) {
  const db = new Database(join(stateDir, "ledger.sqlite"), { readonly: true });
  try {
    return {
      tasks: db.prepare("SELECT id, state, attempts, result_json FROM tasks ORDER BY id").all() as Array<{
        id: number;
        state: string;
        attempts: number;
        result_json: string | null;
      }>,
      attempts: db.prepare("SELECT * FROM attempts ORDER BY id").all() as AttemptRow[],
      events: db.prepare("SELECT kind, task_id, detail FROM events ORDER BY id").all() as Array<{
        kind: string;
        task_id: number | null;
        detail: string;
      }>,
    };
  } finally {
    db.close();
  }
}

function expectCode(result: CliResult, code: number): void {
  expect(result.code, `exited ${result.code}:\n${result.stdout}\n${result.stderr}`).toBe(code);
}

function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

async function until(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/**
 * A training loop in plain python3 speaking the task protocol by its environment variables: it
 * resumes from `state.json` in LABSWEEP_CHECKPOINT_DIR, and on LABSWEEP_STOP_SIGNAL (or the stop
 * file) saves its step there and exits 143. Each attempt notes what it saw in MARKS/start-N.
 */
const TRAIN_PY = `import json, os, signal, sys, time
env = os.environ
ckpt = env["LABSWEEP_CHECKPOINT_DIR"]
state = os.path.join(ckpt, "state.json")
step = json.load(open(state))["step"] if os.path.exists(state) else 0
resumed_from = step
with open(os.path.join(env["MARKS"], "start-" + env["LABSWEEP_ATTEMPT_ID"]), "w") as f:
    json.dump({"ckpt": ckpt, "step": step, "signal": env["LABSWEEP_STOP_SIGNAL"]}, f)
stop = False
def on_stop(signum, frame):
    global stop
    stop = True
signal.signal(getattr(signal, env["LABSWEEP_STOP_SIGNAL"]), on_stop)
total = int(sys.argv[1])
while step < total:
    if stop or os.path.exists(env["LABSWEEP_STOP_FILE"]):
        with open(state + ".tmp", "w") as f:
            json.dump({"step": step}, f)
        os.replace(state + ".tmp", state)
        print("saved step", step, flush=True)
        sys.exit(143)
    time.sleep(0.05)
    step += 1
    print("step", step, flush=True)
json.dump({"resumed_from": resumed_from, "steps": step}, open(env["LABSWEEP_RESULT_FILE"], "w"))
`;

async function serve(dir: string): Promise<Watched & { url: string; token: string }> {
  const watched = watch(
    startCli(["serve", join(dir, "sweep.yaml"), "--exit-when-done", "--port", "0", "--trust-loopback"], {
      cwd: dir,
    }),
  );
  await watched.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
  const url = (/^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(watched.output()) as RegExpExecArray)[1] as string;
  const token = (await runCli(["token", "--state", join(dir, ".labsweep")])).stdout.trim();
  return { ...watched, url, token };
}

function agent(
  served: { url: string; token: string },
  stateDir: string,
  args: string[],
  env: NodeJS.ProcessEnv,
) {
  return watch(
    startCli(["agent", "--server", served.url, `--token=${served.token}`, "--state", stateDir, ...args], {
      env,
    }),
  );
}

describe("stops", () => {
  it("an agent SIGTERMed mid-task records it preempted, spends no retry, and the next attempt resumes from its checkpoint", async () => {
    const dir = tempDir();
    const marks = tempDir();
    const shared = tempDir(); // storage both agents see, at the same path here
    writeFile(dir, "train.py", TRAIN_PY);
    writeFile(
      dir,
      "sweep.yaml",
      "command: python3 train.py {steps}\nretries: 0\ntrain:\n  defaults: {steps: 100}\n",
    );
    const served = await serve(dir);
    const env = { MARKS: marks };
    const first = agent(served, join(dir, "agent-a"), ["--checkpoint-root", shared, "--slots", "1"], env);
    const log = join(dir, "agent-a", "tasks", "1", "attempt-1.log");
    await until(
      () => existsSync(log) && /^step 5$/m.test(readFileSync(log, "utf8")),
      "the task to train a while",
    );
    first.child.kill("SIGTERM"); // what SLURM sends at a time limit or preemption
    expectCode(await first.result, 130);
    expect(readFileSync(log, "utf8")).toMatch(/^saved step \d+$/m);

    const stopped = ledger(join(dir, ".labsweep"));
    expect(stopped.attempts).toMatchObject([{ outcome: "preempted" }]);
    expect(stopped.attempts[0]?.error).toContain("preempted");
    expect(stopped.tasks).toMatchObject([{ state: "pending", attempts: 0 }]); // no retry spent
    expect(stopped.events.map((event) => event.kind)).toContain("task_preempted");
    const status = await runCli(["status", join(dir, "sweep.yaml")], { cwd: dir });
    expect(status.stdout).toMatch(/requeued task 1 at .*: preempted/);

    // Another agent, another state dir, the same checkpoint root: it resumes (retries: 0 is no
    // obstacle, as the preemption spent none).
    const second = agent(served, join(dir, "agent-b"), ["--checkpoint-root", shared, "--slots", "1"], env);
    expectCode(await second.result, 0);
    expectCode(await served.result, 0);
    const done = ledger(join(dir, ".labsweep"));
    expect(done.attempts.map((attempt) => attempt.outcome)).toEqual(["preempted", "succeeded"]);
    const result = JSON.parse(done.tasks[0]?.result_json as string) as {
      resumed_from: number;
      steps: number;
    };
    expect(result.steps).toBe(100);
    expect(result.resumed_from).toBeGreaterThanOrEqual(5);
    const starts = readdirSync(marks)
      .sort()
      .map((name) => JSON.parse(readFileSync(join(marks, name), "utf8")) as { ckpt: string; step: number });
    expect(starts).toHaveLength(2);
    expect(starts[1]?.ckpt).toBe(starts[0]?.ckpt); // checkpoint_dir the same for both attempts
    expect(starts[0]?.ckpt.startsWith(`${shared}/`)).toBe(true);
    expect(starts[1]?.step).toBe(result.resumed_from);
  });

  it("with the Python client and stop_signal SIGUSR1: labsweep run SIGTERMed is preempted, and the rerun resumes", async () => {
    const dir = tempDir();
    writeFile(
      dir,
      "train.py",
      `import json, time
import labsweep
state = labsweep.checkpoint_dir() / "state.json"
step = json.loads(state.read_text())["step"] if state.exists() else 0
start = step
while step < 60:
    if labsweep.should_stop():
        state.with_suffix(".tmp").write_text(json.dumps({"step": step}))
        state.with_suffix(".tmp").replace(state)
        raise SystemExit(1)
    time.sleep(0.05)
    step += 1
    labsweep.report(step, loss=1.0 / step)
labsweep.result(resumed_from=start, steps=step)
`,
    );
    writeFile(dir, "sweep.yaml", "command: python3 train.py\nretries: 0\nt:\n  stop_signal: SIGUSR1\n");
    const first = watch(startCli(["run", "sweep.yaml", "--slots", "1", "--no-dashboard"], { cwd: dir }));
    const ckpt = join(dir, ".labsweep", "checkpoints");
    const events = join(dir, ".labsweep", "tasks", "1", "attempt-1.events.jsonl");
    await until(() => existsSync(events) && readFileSync(events, "utf8").split("\n").length > 5, "reports");
    first.child.kill("SIGTERM");
    expectCode(await first.result, 130);
    expect(ledger(join(dir, ".labsweep")).attempts).toMatchObject([{ outcome: "preempted" }]);
    expect(readdirSync(ckpt)).toHaveLength(1);

    expectCode(await runCli(["run", "sweep.yaml", "--slots", "1", "--no-dashboard"], { cwd: dir }), 0);
    const { tasks, attempts } = ledger(join(dir, ".labsweep"));
    expect(attempts.map((attempt) => attempt.outcome)).toEqual(["preempted", "succeeded"]);
    expect(tasks[0]).toMatchObject({ state: "succeeded", attempts: 0 });
    const result = JSON.parse(tasks[0]?.result_json as string) as { resumed_from: number; steps: number };
    expect(result).toMatchObject({ steps: 60 });
    expect(result.resumed_from).toBeGreaterThan(0);
  });

  it("sends the phase's stop_signal and creates the stop file, saying why", async () => {
    const dir = tempDir();
    writeFile(
      dir,
      "task.py",
      `import os, signal, sys, time
def on_usr1(signum, frame):
    with open("got", "w") as f:
        f.write(signal.Signals(signum).name + " " + open(os.environ["LABSWEEP_STOP_FILE"]).read())
    sys.exit(3)
signal.signal(signal.SIGUSR1, on_usr1)
open("env", "w").write(os.environ["LABSWEEP_STOP_SIGNAL"])
time.sleep(60)
`,
    );
    writeFile(
      dir,
      "sweep.yaml",
      "command: python3 task.py\nretries: 0\nt:\n  timeout: 1s\n  stop_signal: USR1\n",
    );
    const result = await runCli(["run", "sweep.yaml", "--slots", "1"], { cwd: dir });
    expectCode(result, 1);
    expect(readFileSync(join(dir, "env"), "utf8")).toBe("SIGUSR1");
    expect(readFileSync(join(dir, "got"), "utf8")).toBe("SIGUSR1 timeout\n");
    expect(ledger(join(dir, ".labsweep")).attempts).toMatchObject([{ outcome: "timeout" }]);
  });

  it("SIGKILLs a task that ignores its stop signal once the phase's stop_grace runs out, whatever --grace says", async () => {
    const dir = tempDir();
    writeFile(
      dir,
      "task.py",
      `import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open("pid", "w").write(str(os.getpid()))
time.sleep(120)
`,
    );
    // exec: python leads the group, so the attempt records what ended it, not its shell.
    writeFile(
      dir,
      "sweep.yaml",
      "command: exec python3 task.py\nretries: 0\nt:\n  timeout: 1s\n  stop_grace: 1s\n",
    );
    // --grace 600 would outlast the test: the phase's stop_grace wins.
    const result = await runCli(["run", "sweep.yaml", "--slots", "1", "--grace", "600"], {
      cwd: dir,
      timeoutMs: 30_000,
    });
    expectCode(result, 1);
    const pid = Number(readFileSync(join(dir, "pid"), "utf8"));
    expect(isAlive(pid)).toBe(false);
    const { attempts } = ledger(join(dir, ".labsweep"));
    expect(attempts).toMatchObject([{ outcome: "timeout", signal: "SIGKILL" }]);
  });
});

describe("hangs", () => {
  it("a silent task is stopped as hung after hang_timeout, and each hang spends a retry", async () => {
    const dir = tempDir();
    writeFile(dir, "task.py", 'import time\nprint("loading", flush=True)\ntime.sleep(60)\n');
    writeFile(
      dir,
      "sweep.yaml",
      "command: python3 task.py\nretries: 1\nbackoff: 100ms\nt:\n  hang_timeout: 1s\n  stop_grace: 2s\n",
    );
    const result = await runCli(["run", "sweep.yaml", "--slots", "1"], { cwd: dir, timeoutMs: 40_000 });
    expectCode(result, 1);
    const state = join(dir, ".labsweep");
    const { tasks, attempts } = ledger(state);
    const why = "hung: no output, report or GPU use for 1s";
    expect(attempts).toMatchObject([
      { outcome: "hung", error: why },
      { outcome: "hung", error: why },
    ]);
    expect(tasks).toMatchObject([{ state: "failed", attempts: 2 }]);
    expect(readFileSync(join(state, "tasks", "1", "attempt-1.log"), "utf8")).toContain(`labsweep: ${why}`);
    expect(readFileSync(join(state, "failed_experiments.csv"), "utf8")).toContain(why);
    const status = await runCli(["status", "sweep.yaml"], { cwd: dir });
    expect(status.stdout).toContain(why);
  });

  it("a long task that keeps logging, or keeps adding events, is not hung", async () => {
    // 6 s of work, a sign of life every 0.3 s, against a 3 s hang_timeout: silent, it would be hung.
    const dir = tempDir();
    writeFile(
      dir,
      "task.py",
      `import json, os, sys, time
how = sys.argv[1]
for step in range(20):
    time.sleep(0.3)
    if how == "log":
        print("step", step, flush=True)
    else:
        with open(os.environ["LABSWEEP_EVENTS_FILE"], "a") as f:
            f.write(json.dumps({"step": step, "loss": 1.0 / (step + 1)}) + "\\n")
json.dump({"ok": 1}, open(os.environ["LABSWEEP_RESULT_FILE"], "w"))
`,
    );
    writeFile(
      dir,
      "sweep.yaml",
      "command: python3 task.py {how}\nretries: 0\nt:\n  hang_timeout: 3s\n  combinations:\n    - how: [log, events]\n",
    );
    const result = await runCli(["run", "sweep.yaml", "--slots", "2"], { cwd: dir, timeoutMs: 40_000 });
    expectCode(result, 0);
    const { tasks, attempts } = ledger(join(dir, ".labsweep"));
    expect(tasks.map((task) => task.state)).toEqual(["succeeded", "succeeded"]);
    expect(attempts.map((attempt) => attempt.outcome)).toEqual(["succeeded", "succeeded"]);
  });

  it("a GPU task silent in its log and events but keeping its GPU busy is not hung; one whose GPU idles is", async () => {
    const dir = tempDir();
    writeFile(dir, "task.py", "import time\ntime.sleep(6)\n");
    writeFile(
      dir,
      "sweep.yaml",
      "command: python3 task.py\nretries: 0\nt:\n  hang_timeout: 3s\n  stop_grace: 1s\n  resources: {gpus: 1}\n",
    );
    const busy = await runCli(["run", "sweep.yaml", "--slots", "1"], {
      cwd: dir,
      env: fakeGpuEnv([{ utilization: 87 }]),
    });
    expectCode(busy, 0);
    expect(ledger(join(dir, ".labsweep")).attempts).toMatchObject([{ outcome: "succeeded" }]);

    const idle = tempDir();
    writeFile(idle, "task.py", "import time\ntime.sleep(6)\n");
    writeFile(idle, "sweep.yaml", readFileSync(join(dir, "sweep.yaml"), "utf8"));
    const stuck = await runCli(["run", "sweep.yaml", "--slots", "1"], {
      cwd: idle,
      env: fakeGpuEnv([{ utilization: 0 }]),
    });
    expectCode(stuck, 1);
    expect(ledger(join(idle, ".labsweep")).attempts).toMatchObject([{ outcome: "hung" }]);
  });
});

describe("bad stop settings", () => {
  it.each([
    ["stop_signal: SIGKILL", "t.stop_signal", "cannot be caught"],
    ["stop_signal: SIGWHAT", "t.stop_signal", "is not a signal"],
    ["stop_grace: soon", "t.stop_grace", "expected a duration"],
    ["hang_timeout: 0", "t.hang_timeout", "must be longer than 0"],
  ])("%s is refused naming file:line, and nothing is written", async (line, keyPath, says) => {
    const dir = tempDir();
    writeFile(dir, "sweep.yaml", `command: echo {x}\nt:\n  defaults: {x: 1}\n  ${line}\n`);
    const result = await runCli(["run", "sweep.yaml"], { cwd: dir });
    expectCode(result, 2);
    expect(result.stderr).toMatch(/sweep\.yaml:4:\d+: /);
    expect(result.stderr).toContain(keyPath);
    expect(result.stderr).toContain(says);
    expect(existsSync(join(dir, ".labsweep"))).toBe(false);
  });
});

describe("checkpoint dirs", () => {
  const ENV_PY = `import json, os
env = {k: v for k, v in os.environ.items() if k.startswith("LABSWEEP_")}
env["ckpt_exists"] = os.path.isdir(env["LABSWEEP_CHECKPOINT_DIR"])
env["stop_file_exists"] = os.path.exists(env["LABSWEEP_STOP_FILE"])
json.dump(env, open("env.json", "w"))
`;

  async function taskEnv(
    config: string,
    args: string[] = [],
  ): Promise<{ dir: string; env: Record<string, unknown> }> {
    const dir = tempDir();
    writeFile(dir, "task.py", ENV_PY);
    writeFile(dir, "sweep.yaml", config);
    const result = await runCli(["run", "sweep.yaml", "--no-dashboard", ...args], { cwd: dir });
    expectCode(result, 0);
    return { dir, env: JSON.parse(readFileSync(join(dir, "env.json"), "utf8")) as Record<string, unknown> };
  }

  it("are <state>/checkpoints/<signature> by default, made before the task starts, with no stop file yet", async () => {
    const { dir, env } = await taskEnv("command: python3 task.py\nt: {}\n");
    const signature = env.LABSWEEP_TASK_SIGNATURE as string;
    expect(env.LABSWEEP_CHECKPOINT_DIR).toBe(join(dir, ".labsweep", "checkpoints", signature));
    expect(env.ckpt_exists).toBe(true);
    expect(env.stop_file_exists).toBe(false);
    expect(env.LABSWEEP_STOP_SIGNAL).toBe("SIGTERM");
  });

  it("follow checkpoint_root, relative to the config's dir, and --checkpoint-root wins over it", async () => {
    const config = "command: python3 task.py\ncheckpoint_root: shared/ckpt\nt:\n  stop_signal: SIGUSR2\n";
    const fromConfig = await taskEnv(config);
    const signature = fromConfig.env.LABSWEEP_TASK_SIGNATURE as string;
    expect(fromConfig.env.LABSWEEP_CHECKPOINT_DIR).toBe(join(fromConfig.dir, "shared", "ckpt", signature));
    expect(fromConfig.env.ckpt_exists).toBe(true);
    expect(fromConfig.env.LABSWEEP_STOP_SIGNAL).toBe("SIGUSR2");

    const mount = tempDir();
    const fromFlag = await taskEnv(config, ["--checkpoint-root", mount]);
    expect(fromFlag.env.LABSWEEP_CHECKPOINT_DIR).toBe(join(mount, signature));
    expect(fromFlag.env.ckpt_exists).toBe(true);
    expect(existsSync(join(fromFlag.dir, "shared"))).toBe(false);
  });
});
