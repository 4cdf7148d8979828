/**
 * A stop as startProcess makes it, whatever its reason: the attempt's stop file (holding the
 * reason), the stop signal to the process group, SIGKILL after the grace; asked for before the
 * task has started, it is made the moment it starts. Real sh and python3 processes.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Launcher, sharedLauncher } from "../src/agent/launcher.js";
import { startProcess } from "../src/agent/runProcess.js";
import { tempDir } from "./helpers/cli.js";

afterAll(() => {
  if (Launcher.available()) sharedLauncher().close();
});

// Records the signal it got and the stop file's text, then exits 7.
const LISTENER = `import os, signal, sys, time
def on_signal(signum, frame):
    stop = os.environ["STOP"]
    text = open(stop).read() if os.path.exists(stop) else "(no stop file)"
    open("got", "w").write(signal.Signals(signum).name + " " + text)
    sys.exit(7)
for name in ("SIGTERM", "SIGUSR2"):
    signal.signal(getattr(signal, name), on_signal)
open("ready", "w").write("")
time.sleep(60)
`;

async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function listener(dir: string, extra: Partial<Parameters<typeof startProcess>[0]> = {}) {
  const stopPath = join(dir, "attempt-1.stop");
  const task = join(dir, "task.py");
  writeFileSync(task, LISTENER);
  return {
    stopPath,
    child: startProcess({
      command: `exec python3 ${task}`,
      cwd: dir,
      env: { ...process.env, STOP: stopPath },
      logPath: join(dir, "attempt-1.log"),
      timeoutMs: null,
      graceMs: 10_000,
      stopSignal: "SIGUSR2",
      stopPath,
      ...extra,
    }),
  };
}

describe("a stop", () => {
  it("writes the stop file with its reason, then sends the stop signal", async () => {
    const dir = tempDir();
    const { child } = listener(dir);
    await until(() => existsSync(join(dir, "ready")));
    child.terminate("abandoned");
    const exit = await child.exited;
    expect(readFileSync(join(dir, "got"), "utf8")).toBe("SIGUSR2 abandoned\n");
    expect(exit).toMatchObject({ exitCode: 7, stopped: true, timedOut: false, stopReason: "abandoned" });
  });

  it("asked for before the task starts, is made once it has", async () => {
    const dir = tempDir();
    let release: () => void = () => undefined;
    const prepared = new Promise<void>((resolve) => {
      release = resolve;
    });
    const { child } = listener(dir, { prepare: () => prepared });
    child.terminate("shutdown");
    release();
    const exit = await child.exited;
    expect(exit.stopReason).toBe("shutdown");
    // The python handler may not be installed yet when the signal comes: then it dies of it.
    if (existsSync(join(dir, "got")))
      expect(readFileSync(join(dir, "got"), "utf8")).toBe("SIGUSR2 shutdown\n");
    else expect(exit.signal).toBe("SIGUSR2");
    expect(readFileSync(join(dir, "attempt-1.stop"), "utf8")).toBe("shutdown\n");
  });

  it("a timeout is a stop too: stop file 'timeout', the stop signal", async () => {
    const dir = tempDir();
    const { child } = listener(dir, { timeoutMs: 1500 });
    const exit = await child.exited;
    expect(exit).toMatchObject({ timedOut: true, stopReason: "timeout" });
    expect(readFileSync(join(dir, "got"), "utf8")).toBe("SIGUSR2 timeout\n");
  });
});
