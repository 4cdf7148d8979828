/**
 * The task launcher (launcher.py) chaining a slot's next task behind the one running: the next
 * process is spawned at once but held at a gate, and started by the launcher itself the moment
 * the one before exits, without the agent. Real python3, real processes; each task records when
 * it ran (ns clock) in files under a temp dir.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DroppedLaunch, type Launched, Launcher } from "../src/agent/launcher.js";
import { REPO_ROOT, tempDir } from "./helpers/cli.js";

const launchers: Launcher[] = [];
afterEach(() => {
  for (const launcher of launchers.splice(0)) launcher.close();
});

function setUp(): {
  dir: string;
  launcher: Launcher;
  launch: (command: string, after?: Launched) => Launched;
} {
  const dir = tempDir("labsweep-launcher-");
  const launcher = new Launcher();
  launchers.push(launcher);
  return {
    dir,
    launcher,
    launch: (command, after) =>
      launcher.launch({ command, cwd: dir, env: process.env, logPath: join(dir, "log") }, after?.id),
  };
}

/** A task that notes when it starts and ends (ns) in `dir/NAME.start` and `dir/NAME.end`. */
function timed(name: string, body = "true"): string {
  return `date +%s%N > ${name}.start; ${body}; date +%s%N > ${name}.end`;
}

function nsIn(dir: string, file: string): number {
  return Number(readFileSync(join(dir, file), "utf8").trim());
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("the launcher chains a slot's next task", () => {
  it("starts it the moment the one before exits, even while the agent's event loop is blocked", async () => {
    const { dir, launch } = setUp();
    const first = launch(timed("a", "sleep 0.3"));
    const next = launch(timed("b"), first);
    await first.pid;
    // The agent is busy (blocked) from before the first task ends until well after: only the
    // launcher can start the next one on time.
    const until = performance.now() + 900;
    while (performance.now() < until) {
      // busy
    }
    await next.exit;
    const gapMs = (nsIn(dir, "b.start") - nsIn(dir, "a.end")) / 1e6;
    expect(gapMs).toBeGreaterThanOrEqual(0);
    expect(gapMs).toBeLessThan(300);
    expect(await first.exit).toEqual({ code: 0, signal: null });
    expect(await next.exit).toEqual({ code: 0, signal: null });
  });

  it("reports the start only when the task really starts, and runs chains in order", async () => {
    const { dir, launch } = setUp();
    const first = launch(timed("a", "sleep 0.4"));
    const second = launch(timed("b", "sleep 0.1"), first);
    const third = launch(timed("c", "exit 3"), second);
    let secondStarted = false;
    void second.pid.then(() => {
      secondStarted = true;
    });
    await sleep(200);
    expect(secondStarted).toBe(false);
    expect(existsSync(join(dir, "b.start"))).toBe(false);
    expect(await third.exit).toEqual({ code: 3, signal: null });
    expect(nsIn(dir, "b.start")).toBeGreaterThanOrEqual(nsIn(dir, "a.end"));
    expect(nsIn(dir, "c.start")).toBeGreaterThanOrEqual(nsIn(dir, "b.end"));
    // Each is the leader of its own process group, as an unchained task is.
    const pids = await Promise.all([first.pid, second.pid, third.pid]);
    expect(new Set(pids).size).toBe(3);
  });

  it("gives a chained task /dev/null as stdin and its own command line, as an unchained one gets", async () => {
    const { dir, launch } = setUp();
    const first = launch("sleep 0.2");
    const next = launch(
      `cat > stdin.txt; echo "$0" > zero.txt; echo "args:$#" >> zero.txt; echo "gate:\${labsweep_gate-unset}" >> zero.txt`,
      first,
    );
    expect(await next.exit).toEqual({ code: 0, signal: null });
    expect(readFileSync(join(dir, "stdin.txt"), "utf8")).toBe("");
    expect(readFileSync(join(dir, "zero.txt"), "utf8")).toBe("/bin/sh\nargs:0\ngate:unset\n");
    // A command that does not parse fails as it would unchained: exit 2, the shell's message in the log.
    const broken = launch(`echo "unterminated`, next);
    expect(await broken.exit).toEqual({ code: 2, signal: null });
    expect(readFileSync(join(dir, "log"), "utf8")).toMatch(/Syntax error/);
    expect(readFileSync(join(dir, "log"), "utf8")).not.toMatch(/labsweep_gate/);
  });

  it("takes back a chained task that has not started: it never runs", async () => {
    const { dir, launcher, launch } = setUp();
    const first = launch("sleep 0.3");
    const second = launch(timed("b"), first);
    const third = launch(timed("c"), second);
    await first.pid;
    // The last first, as the agent does; then the one before it.
    third.pid.catch(() => undefined);
    expect(await launcher.drop(third.id)).toBe(true);
    expect(await launcher.drop(second.id)).toBe(true);
    await expect(second.pid).rejects.toBeInstanceOf(DroppedLaunch);
    await first.exit;
    await sleep(300);
    expect(existsSync(join(dir, "b.start"))).toBe(false);
    expect(existsSync(join(dir, "c.start"))).toBe(false);
  });

  it("dropping a task in the middle of a chain leaves the one behind it waiting for the one before", async () => {
    const { dir, launcher, launch } = setUp();
    const first = launch(timed("a", "sleep 0.3"));
    const second = launch(timed("b"), first);
    const third = launch(timed("c"), second);
    await first.pid;
    second.pid.catch(() => undefined);
    expect(await launcher.drop(second.id)).toBe(true);
    await third.exit;
    expect(existsSync(join(dir, "b.start"))).toBe(false);
    expect(nsIn(dir, "c.start")).toBeGreaterThanOrEqual(nsIn(dir, "a.end"));
  });

  it("cannot take back a task that has started; release starts a waiting one at once", async () => {
    const { dir, launcher, launch } = setUp();
    const quick = launch("true");
    const started = launch(timed("b", "sleep 0.2"), quick);
    await started.pid;
    expect(await launcher.drop(started.id)).toBe(false);
    expect(await started.exit).toEqual({ code: 0, signal: null });

    const slow = launch(timed("a", "sleep 2"));
    const released = launch(timed("c"), slow);
    await slow.pid;
    launcher.release(released.id);
    await released.exit;
    expect(existsSync(join(dir, "a.end"))).toBe(false);
    process.kill(-(await slow.pid), "SIGKILL");
    await slow.exit;
  });

  it("starts a chained task at once when the task it follows has already exited", async () => {
    const { launch } = setUp();
    const first = launch("true");
    await first.exit;
    const next = launch("true", first);
    expect(await next.exit).toEqual({ code: 0, signal: null });
  });

  it("starts nothing after its agent dies, even chained tasks whose turn comes", async () => {
    const dir = tempDir("labsweep-launcher-");
    // An agent that chains a task behind a running one, then dies by SIGKILL.
    const script = `
      import { Launcher } from ${JSON.stringify(join(REPO_ROOT, "dist/agent/launcher.js"))};
      const launcher = new Launcher();
      const spec = (command) => ({ command, cwd: ${JSON.stringify(dir)}, env: process.env, logPath: ${JSON.stringify(join(dir, "log"))} });
      const first = launcher.launch(spec("touch first; sleep 0.3"));
      launcher.launch(spec("touch ran"), first.id);
      await first.pid;
      setTimeout(() => process.kill(process.pid, "SIGKILL"), 50);
    `;
    // The built launcher (npm test builds first), as the CLI runs it.
    const agent = spawn(process.execPath, ["--input-type=module", "-e", script], {
      cwd: REPO_ROOT,
      stdio: "ignore",
    });
    await new Promise((resolve) => agent.once("exit", resolve));
    await sleep(800);
    expect(existsSync(join(dir, "first"))).toBe(true);
    expect(existsSync(join(dir, "ran"))).toBe(false);
  });
});

describe("the launcher makes a task's dirs before its log", () => {
  it("makes them 0700 with their parents, removes the files to clear and writes the files, for plain and chained tasks", async () => {
    const { dir, launcher, launch } = setUp();
    const request = (name: string) => {
      const taskDir = join(dir, "state", "tasks", name);
      const stale = join(taskDir, "attempt-1.result.json");
      const config = join(taskDir, "config.json");
      return {
        command: `test -d ${join(dir, "ckpt", name)} && test ! -e ${stale} && cat ${config} && echo ran`,
        cwd: dir,
        env: process.env,
        logPath: join(taskDir, "attempt-1.log"),
        dirs: [taskDir, join(dir, "ckpt", name)],
        clear: [stale],
        files: [{ path: config, text: `config ${name}\n` }],
      };
    };
    // An earlier attempt's result where the second task's dir already is, and a longer config
    // of an earlier attempt, which the new one replaces whole.
    mkdirSync(join(dir, "state", "tasks", "2"), { recursive: true, mode: 0o700 });
    writeFileSync(join(dir, "state", "tasks", "2", "attempt-1.result.json"), "{}");
    writeFileSync(join(dir, "state", "tasks", "2", "config.json"), "an earlier attempt's config, longer\n");
    const running = launch("sleep 0.3");
    const plain = launcher.launch(request("1"));
    const chained = launcher.launch(request("2"), running.id);
    expect(await plain.exit).toEqual({ code: 0, signal: null });
    expect(await chained.exit).toEqual({ code: 0, signal: null });
    // A new file is the owner's alone.
    expect(statSync(join(dir, "state", "tasks", "1", "config.json")).mode & 0o777).toBe(0o600);
    for (const name of ["1", "2"]) {
      expect(readFileSync(join(dir, "state", "tasks", name, "attempt-1.log"), "utf8")).toBe(
        `config ${name}\nran\n`,
      );
      for (const made of [join("state", "tasks", name), "state", join("ckpt", name), "ckpt"])
        expect(statSync(join(dir, made)).mode & 0o777, made).toBe(0o700);
    }
  });

  it("fails the start, saying why, when a dir cannot be made", async () => {
    const { dir, launcher } = setUp();
    writeFileSync(join(dir, "file"), "");
    const launched = launcher.launch({
      command: "true",
      cwd: dir,
      env: process.env,
      logPath: join(dir, "file", "tasks", "1", "attempt-1.log"),
      dirs: [join(dir, "file", "tasks", "1")],
    });
    await expect(launched.pid).rejects.toThrow(/Not a directory/);
    expect(await launched.exit).toEqual({ code: 127, signal: null });
  });
});

describe("the launcher's base environment", () => {
  it("is sent once and laid under each task's own variables, which win", async () => {
    const { dir, launcher } = setUp();
    const base = { ...process.env, FROM_BASE: "base", OVERRIDDEN: "base" };
    const run = (name: string) =>
      launcher.launch({
        command: `echo "$FROM_BASE $OVERRIDDEN $OWN" > ${name}.env`,
        cwd: dir,
        env: { OVERRIDDEN: `own-${name}`, OWN: name },
        baseEnv: base,
        logPath: join(dir, "log"),
      });
    const [a, b] = [run("a"), run("b")];
    await Promise.all([a.exit, b.exit]);
    expect(readFileSync(join(dir, "a.env"), "utf8")).toBe("base own-a a\n");
    expect(readFileSync(join(dir, "b.env"), "utf8")).toBe("base own-b b\n");
  });
});
