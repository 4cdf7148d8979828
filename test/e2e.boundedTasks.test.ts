/**
 * No task loops forever, end to end with the built CLI (`npm run build` first): a result too
 * large to report fails its attempt with the limit in the error, and a task that kills its agent
 * every time fails after `max_lost` losses. Before, both were requeued as lost and rerun without
 * end.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Database } from "../src/ledger/sqliteDriver.js";
import { runCli, startCli, tempDir, type Watched, watch, writeFile } from "./helpers/cli.js";
import { fakeGpuEnv } from "./helpers/fakeGpus.js";

async function serve(dir: string): Promise<Watched & { url: string; token: string }> {
  const watched = watch(
    startCli(["serve", join(dir, "sweep.yaml"), "--exit-when-done", "--port", "0"], { cwd: dir }),
  );
  await watched.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
  const url = (/^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(watched.output()) as RegExpExecArray)[1] as string;
  const token = (await runCli(["token", "--state", join(dir, ".labsweep")])).stdout.trim();
  return { ...watched, url, token };
}

/** An agent; one that finds the coordinator gone (the sweep ended as it started) gives up soon. */
function agent(served: { url: string; token: string }, stateDir: string): Watched {
  const env = { ...fakeGpuEnv([]), LABSWEEP_GPU_LOCK_DIR: tempDir(), LABSWEEP_TOKEN: served.token };
  const args = ["agent", "--server", served.url, "--state", stateDir, "--slots", "1", "--grace", "1"];
  return watch(startCli([...args, "--give-up-after", "10"], { env }));
}

function attemptsOf(
  stateDir: string,
  taskId: number,
): Array<{ number: number; outcome: string; error: string }> {
  const db = new Database(join(stateDir, "ledger.sqlite"), { readonly: true });
  try {
    return db
      .prepare("SELECT number, outcome, error FROM attempts WHERE task_id = ? ORDER BY id")
      .all(taskId) as Array<{ number: number; outcome: string; error: string }>;
  } finally {
    db.close();
  }
}

describe("no task loops forever", () => {
  it("a task writing a 2 MiB result fails with the limit in its error, retries as any failure, and stops", async () => {
    const dir = tempDir();
    writeFile(
      dir,
      "task.py",
      'import json, os\njson.dump({"blob": "a" * (2 * 1024 * 1024)}, open(os.environ["LABSWEEP_RESULT_FILE"], "w"))\n',
    );
    writeFile(
      dir,
      "sweep.yaml",
      "command: python3 task.py {x}\nretries: 1\nbackoff: 0.1s\np:\n  combinations:\n    - x: [1]\n",
    );
    const served = await serve(dir);
    const worker = agent(served, join(dir, "agent"));
    const [done] = await Promise.all([worker.result, served.result]);
    expect(done.code, done.stderr).toBe(0);
    const attempts = attemptsOf(join(dir, ".labsweep"), 1);
    // One try and one retry, each failed with the limit: no lease ran out, nothing was lost.
    expect(attempts.map((attempt) => attempt.outcome)).toEqual(["failed", "failed"]);
    for (const attempt of attempts)
      expect(attempt.error).toMatch(/^result file is 2\.0 MiB; the limit is 256 KiB/);
    const failedLog = readFileSync(join(dir, ".labsweep", "failed_experiments.csv"), "utf8");
    expect(failedLog).toContain("result file is 2.0 MiB; the limit is 256 KiB");
  });

  it("a task that SIGKILLs its agent every time fails after max_lost (3) losses, saying why", async () => {
    const dir = tempDir();
    const pidFile = join(dir, "agent.pid");
    // Task 1 runs first and succeeds, so task 2's first attempt is the ledger's attempt 2.
    writeFile(
      dir,
      "sweep.yaml",
      `command: if [ {x} = 2 ]; then kill -9 "$(cat '${pidFile}')"; sleep 5; fi\np:\n  combinations:\n    - x: [1, 2]\n`,
    );
    const served = await serve(dir);
    const stateDir = join(dir, "agent");
    const outputs: string[] = [];
    let killed = 0;
    for (let start = 1; start <= 6; start++) {
      const worker = agent(served, stateDir);
      writeFileSync(pidFile, String(worker.child.pid));
      const result = await worker.result;
      outputs.push(result.stderr);
      if (result.signal !== "SIGKILL") break;
      killed++;
    }
    // Killed by its three attempts; the fourth start found the task failed and the sweep done.
    expect(killed).toBe(3);
    expect((await served.result).stderr).toContain("every task has finished");
    const attempts = attemptsOf(join(dir, ".labsweep"), 2);
    expect(attempts.map((attempt) => [attempt.number, attempt.outcome])).toEqual([
      [1, "lost"],
      [2, "lost"],
      [3, "lost"],
    ]);
    const why = "lost 3 times: its agent died or stopped answering each time";
    expect(attempts[2]?.error).toContain(why);
    expect(readFileSync(join(dir, ".labsweep", "failed_experiments.csv"), "utf8")).toContain(why);
    const status = await runCli(["status", "--state", join(dir, ".labsweep")]);
    expect(status.stdout).toContain(why);
    // The agent's log numbers a task's attempts from 1, not by the ledger-wide attempt id.
    expect(outputs[0]).toMatch(/task 2 \(attempt 1\) started/);
    expect(outputs[2]).toMatch(/task 2 \(attempt 3\) started/);
  });
});
