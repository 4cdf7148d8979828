import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { describe, expect, it } from "vitest";
import { Database } from "../src/ledger/sqliteDriver.js";
import { type CliResult, runCli, startCli, tempDir, type Watched, watch, writeFile } from "./helpers/cli.js";
import { type FakeGpu, fakeGpuEnv } from "./helpers/fakeGpus.js";

/** A task: prints, sleeps `sleep` seconds, writes its params, GPU and agent as metrics. */
const TASK_PY = `import json, os, sys, time
x = int(sys.argv[1]); sleep = float(sys.argv[2])
open(os.path.join(os.environ.get("PIDS_DIR", "."), f"pid-{x}"), "w").write(str(os.getpid()))
print(f"task {x} step 1", flush=True)
time.sleep(sleep)
print(f"task {x} done", flush=True)
json.dump({"gpu": os.environ.get("CUDA_VISIBLE_DEVICES", "-"), "agent": os.environ["LABSWEEP_STATE_DIR"]},
          open(os.environ["LABSWEEP_RESULT_FILE"], "w"))
`;

function sweepYaml(count: number, sleep: number, extra = ""): string {
  const xs = Array.from({ length: count }, (_, index) => index + 1).join(", ");
  return `command: python3 task.py {x} ${sleep}\np1:\n  output_dir: out\n${extra}  combinations:\n    - x: [${xs}]\n`;
}

/** A child whose output is kept, with a way to wait for a line. */
interface Served extends Watched {
  url: string;
  token: string;
}

async function serve(dir: string, args: string[] = ["--port", "0"], config = "sweep.yaml"): Promise<Served> {
  const watched = watch(
    startCli(["serve", join(dir, config), "--exit-when-done", "--trust-loopback", ...args], { cwd: dir }),
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
  cwd?: string,
): Watched {
  return watch(
    startCli(
      [
        "agent",
        "--server",
        served.url,
        `--token=${served.token}`,
        "--state",
        stateDir,
        "--grace",
        "1",
        ...args,
      ],
      {
        env,
        cwd,
      },
    ),
  );
}

function expectCode(result: CliResult, code: number): void {
  expect(result.code, `exited ${result.code}:\n${result.stderr}`).toBe(code);
}

function readCsv(path: string): Record<string, string>[] {
  const [header = [], ...rows] = parse(readFileSync(path, "utf8")) as string[][];
  return rows.map((cells) => Object.fromEntries(header.map((name, index) => [name, cells[index] ?? ""])));
}

function ledger(stateDir: string) {
  const db = new Database(join(stateDir, "ledger.sqlite"), { readonly: true });
  try {
    return {
      tasks: db.prepare("SELECT id, state, attempts FROM tasks ORDER BY id").all() as Array<{
        id: number;
        state: string;
        attempts: number;
      }>,
      attempts: db.prepare("SELECT * FROM attempts ORDER BY id").all() as Array<{
        id: number;
        task_id: number;
        worker: string;
        outcome: string | null;
        exit_code: number | null;
        error: string | null;
      }>,
    };
  } finally {
    db.close();
  }
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

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A sweep dir with task.py and sweep.yaml. */
function project(count: number, sleep: number, extra = ""): string {
  const dir = tempDir();
  writeFile(dir, "task.py", TASK_PY);
  writeFile(dir, "sweep.yaml", sweepYaml(count, sleep, extra));
  return dir;
}

describe("labsweep serve + labsweep agent", () => {
  it("two agents on one host run a sweep: every task exactly once, each agent on its own GPU", async () => {
    const dir = project(12, 0.3);
    const locks = tempDir();
    const env = { ...fakeGpuEnv([{}, {}] as FakeGpu[]), LABSWEEP_GPU_LOCK_DIR: locks };
    const served = await serve(dir);
    const a = agent(served, join(dir, "agent-a"), ["--slots", "1", "--name", "a"], env);
    await a.waitFor(/registered with/);
    const b = agent(served, join(dir, "agent-b"), ["--slots", "1", "--name", "b"], env);
    const [ra, rb, rs] = await Promise.all([a.result, b.result, served.result]);
    expectCode(ra, 0);
    expectCode(rb, 0);
    expectCode(rs, 0);
    expect(ra.stderr).toContain("the coordinator has nothing left for this machine; exiting");

    const rows = readCsv(join(dir, "out", "final_results.csv"));
    expect(rows.map((row) => Number(row.x)).sort((p, q) => p - q)).toEqual([
      1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ]);
    const { tasks, attempts } = ledger(join(dir, ".labsweep"));
    expect(tasks.every((task) => task.state === "succeeded")).toBe(true);
    expect(attempts).toHaveLength(12); // nothing ran twice
    // Each agent stuck to the one GPU it locked; the two never shared one.
    const gpusOf = (agentDir: string) =>
      new Set(rows.filter((row) => row.agent === join(dir, agentDir)).map((row) => row.gpu));
    expect([...gpusOf("agent-a")]).toEqual(["0"]);
    expect([...gpusOf("agent-b")]).toEqual(["1"]);
    // Locks, running files and outbox are all cleaned up.
    expect(readdirSync(locks)).toEqual([]);
    for (const agentDir of ["agent-a", "agent-b"]) {
      expect(readdirSync(join(dir, agentDir, "outbox"))).toEqual([]);
      expect(readdirSync(join(dir, agentDir, "running"))).toEqual([]);
    }
  });

  it("keeps running while the coordinator is away; its reports wait in the outbox and arrive once it is back", async () => {
    const dir = project(6, 1.5);
    const port = String(await freePort());
    const env = { ...fakeGpuEnv([]), LABSWEEP_GPU_LOCK_DIR: tempDir() };
    const first = await serve(dir, ["--port", port]);
    const worker = agent(first, join(dir, "agent"), ["--slots", "2"], env);
    await worker.waitFor(/task 2 \(attempt \d+\) started/);
    first.child.kill("SIGKILL");
    await first.result;
    // The running tasks finish meanwhile; their reports go to the agent's disk.
    await worker.waitFor(/cannot reach the coordinator at .*; retrying/);
    const outbox = join(dir, "agent", "outbox");
    const deadline = Date.now() + 10_000;
    while (readdirSync(outbox).filter((name) => name.endsWith(".json")).length < 2 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 50));
    expect(readdirSync(outbox).filter((name) => name.endsWith(".json"))).toHaveLength(2);
    const second = await serve(dir, ["--port", port]);
    const [rw, rs] = await Promise.all([worker.result, second.result]);
    expectCode(rw, 0);
    expectCode(rs, 0);
    expect(rw.stderr).toMatch(/reached the coordinator at .* again/);
    const rows = readCsv(join(dir, "out", "final_results.csv"));
    expect(rows.map((row) => Number(row.x)).sort((p, q) => p - q)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(readdirSync(outbox)).toEqual([]);
  });

  it("--give-up-after: an idle agent with no coordinator exits 1; running tasks finish first, their reports kept", async () => {
    // Never reachable (a SLURM element that started after its sweep's coordinator exited).
    const nobody = { url: `http://127.0.0.1:${await freePort()}`, token: "t0123456789abcdef" };
    const env = { ...fakeGpuEnv([]), LABSWEEP_GPU_LOCK_DIR: tempDir() };
    const alone = agent(nobody, join(tempDir(), "agent"), ["--give-up-after", "1"], env);
    const gaveUp = await alone.result;
    expectCode(gaveUp, 1);
    expect(gaveUp.stderr).toMatch(/no coordinator has answered for \d+ s \(--give-up-after\); giving up/);

    // Lost mid-run: the running tasks finish, and only then does the agent give up.
    const dir = project(2, 2);
    const served = await serve(dir);
    const worker = agent(served, join(dir, "agent"), ["--slots", "2", "--give-up-after", "1"], env);
    await worker.waitFor(/task 2 \(attempt \d+\) started/);
    served.child.kill("SIGKILL");
    await served.result;
    const result = await worker.result;
    expectCode(result, 1);
    expect(result.stderr).toMatch(/task 1 \(attempt \d+\) succeeded[\s\S]*giving up/);
    expect(result.stderr).toMatch(/task 2 \(attempt \d+\) succeeded[\s\S]*giving up/);
    expect(result.stderr).toMatch(/2 report\(s\) not sent yet; kept in/);
    expect(readdirSync(join(dir, "agent", "outbox")).filter((name) => name.endsWith(".json"))).toHaveLength(
      2,
    );
  });

  it("an agent killed with SIGKILL is replaced by its next start: leftovers killed, every task once", async () => {
    const dir = project(4, 30, "  retries: 0\n");
    const pids = tempDir();
    const env = { ...fakeGpuEnv([]), LABSWEEP_GPU_LOCK_DIR: tempDir(), PIDS_DIR: pids };
    const served = await serve(dir);
    const stateDir = join(dir, "agent");
    const killed = agent(served, stateDir, ["--slots", "2"], env);
    await killed.waitFor(/task 2 \(attempt \d+\) started/);
    const running = join(stateDir, "running");
    while (!existsSync(running) || readdirSync(running).length < 2)
      await new Promise((resolve) => setTimeout(resolve, 25));
    killed.child.kill("SIGKILL");
    await killed.result;
    const taskPids = readdirSync(pids).map((name) => Number(readFileSync(join(pids, name), "utf8")));
    // The tasks are quick the second time round.
    writeFile(dir, "task.py", TASK_PY.replace("time.sleep(sleep)", "time.sleep(0.1)"));
    const again = agent(served, stateDir, ["--slots", "2"], env);
    const [ra, rs] = await Promise.all([again.result, served.result]);
    expectCode(ra, 0);
    expectCode(rs, 0);
    for (const pid of taskPids) expect(isAlive(pid), `task process ${pid}`).toBe(false);
    expect(readdirSync(join(stateDir, "running"))).toEqual([]);
    const rows = readCsv(join(dir, "out", "final_results.csv"));
    expect(rows.map((row) => Number(row.x)).sort((p, q) => p - q)).toEqual([1, 2, 3, 4]);
    // The killed run's attempts were requeued, not failed: no retry was spent (retries: 0).
    const { tasks } = ledger(join(dir, ".labsweep"));
    expect(tasks.every((task) => task.state === "succeeded")).toBe(true);
  });

  it("streams a running task's log to the coordinator", async () => {
    const dir = project(1, 4);
    const served = await serve(dir);
    const worker = agent(served, join(dir, "agent"), [], {
      ...fakeGpuEnv([]),
      LABSWEEP_GPU_LOCK_DIR: tempDir(),
    });
    await worker.waitFor(/task 1 \(attempt \d+\) started/);
    const startedAt = Date.now();
    let log = "";
    while (!log.includes("task 1 step 1") && Date.now() - startedAt < 3500) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      log = await (await fetch(`${served.url}/api/v1/tasks/1/log`)).text();
    }
    expect(log).toContain("task 1 step 1");
    expect(log).not.toContain("task 1 done"); // seen while it still ran
    const [rw, rs] = await Promise.all([worker.result, served.result]);
    expectCode(rw, 0);
    expectCode(rs, 0);
    expect(readFileSync(join(dir, ".labsweep", "tasks", "1", "attempt-1.log"), "utf8")).toBe(
      "task 1 step 1\ntask 1 done\n",
    );
  });

  it("sends its GPUs' utilisation and memory with its heartbeats, for the dashboard's Machines", async () => {
    const dir = project(1, 3);
    // A 2 s lease: heartbeats every 0.5 s.
    const served = await serve(dir, ["--port", "0", "--lease-seconds", "2"]);
    const gpu = { memoryTotalMiB: 16_384, memoryFreeMiB: 10_000, utilization: 63 };
    const worker = agent(served, join(dir, "agent"), [], {
      ...fakeGpuEnv([gpu]),
      LABSWEEP_GPU_LOCK_DIR: tempDir(),
    });
    await worker.waitFor(/task 1 \(attempt \d+\) started/);
    type Machines = { machines: Array<{ kind: string; telemetry: Array<{ gpus: unknown[] }> }> };
    let readings: unknown[] = [];
    for (let i = 0; i < 40 && readings.length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const answer = (await (await fetch(`${served.url}/api/v1/dashboard/machines`)).json()) as Machines;
      readings = answer.machines.find((machine) => machine.kind === "agent")?.telemetry ?? [];
    }
    expect(readings[0]).toMatchObject({
      gpus: [{ index: 0, utilizationPct: 63, memoryUsedMiB: 6384, memoryTotalMiB: 16_384 }],
    });
    const [rw, rs] = await Promise.all([worker.result, served.result]);
    expectCode(rw, 0);
    expectCode(rs, 0);
  });

  it("a cancelled task's process group is terminated and reported interrupted, not failed", async () => {
    const dir = project(1, 60);
    const pids = tempDir();
    const served = await serve(dir);
    const worker = agent(served, join(dir, "agent"), [], {
      ...fakeGpuEnv([]),
      LABSWEEP_GPU_LOCK_DIR: tempDir(),
      PIDS_DIR: pids,
    });
    await worker.waitFor(/task 1 \(attempt \d+\) started/);
    while (!existsSync(join(pids, "pid-1"))) await new Promise((resolve) => setTimeout(resolve, 25));
    const pid = Number(readFileSync(join(pids, "pid-1"), "utf8"));
    const admin = (await runCli(["token", "--state", join(dir, ".labsweep"), "--admin"])).stdout.trim();
    const cancel = await runCli(["cancel", "1", "--server", served.url], {
      env: { LABSWEEP_ADMIN_TOKEN: admin },
    });
    expectCode(cancel, 0);
    const [rw, rs] = await Promise.all([worker.result, served.result]);
    expectCode(rw, 0);
    expectCode(rs, 0);
    expect(rw.stderr).toMatch(/the coordinator cancelled attempt\(s\) \d+/);
    expect(isAlive(pid)).toBe(false);
    const { tasks, attempts } = ledger(join(dir, ".labsweep"));
    expect(tasks[0]?.state).toBe("cancelled");
    expect(attempts).toHaveLength(1);
    expect(attempts[0]?.outcome).toBe("interrupted");
    expect(existsSync(join(dir, ".labsweep", "failed_experiments.csv"))).toBe(false);
  });

  it("fails a task whose cwd does not exist here, clearly, unless --workdir says where to run it", async () => {
    const project1 = project(1, 0, "  retries: 0\n");
    const stateDir = tempDir();
    const outDir = tempDir();
    writeFile(
      project1,
      "sweep.yaml",
      sweepYaml(1, 0, `  retries: 0\n`).replace("output_dir: out", `output_dir: ${outDir}`),
    );
    const served = await serve(project1, ["--port", "0", "--state", stateDir]);
    const token = (await runCli(["token", "--state", stateDir])).stdout.trim();
    rmSync(project1, { recursive: true, force: true }); // the config's dir exists on the coordinator's side only
    const env = { ...fakeGpuEnv([]), LABSWEEP_GPU_LOCK_DIR: tempDir() };
    const worker = agent({ url: served.url, token }, join(stateDir, "agent"), [], env);
    const [rw, rs] = await Promise.all([worker.result, served.result]);
    expectCode(rw, 0);
    expectCode(rs, 0);
    const { tasks, attempts } = ledger(stateDir);
    expect(tasks[0]?.state).toBe("failed");
    expect(attempts[0]?.exit_code).toBeNull();
    expect(attempts[0]?.error).toBe(
      `cwd ${project1} does not exist on this machine: start the agent with --workdir DIR or check out the project at the same path`,
    );
    expect(rw.stderr).toContain("start the agent with --workdir DIR");

    // The same sweep with --workdir: it runs there.
    mkdirSync(project1);
    writeFile(
      project1,
      "sweep.yaml",
      sweepYaml(1, 0).replace("output_dir: out", `output_dir: ${outDir}/again`),
    );
    const stateDir2 = tempDir();
    const served2 = await serve(project1, ["--port", "0", "--state", stateDir2]);
    const token2 = (await runCli(["token", "--state", stateDir2])).stdout.trim();
    rmSync(project1, { recursive: true, force: true });
    const workdir = tempDir();
    writeFile(workdir, "task.py", TASK_PY);
    const worker2 = agent(
      { url: served2.url, token: token2 },
      join(stateDir2, "agent"),
      ["--workdir", workdir],
      env,
    );
    const [rw2, rs2] = await Promise.all([worker2.result, served2.result]);
    expectCode(rw2, 0);
    expectCode(rs2, 0);
    expect(ledger(stateDir2).tasks[0]?.state).toBe("succeeded");
  });

  it("SIGTERM (a scheduler stopping the job) terminates running tasks, reports them preempted (issue 13), and releases the GPU locks", async () => {
    const dir = project(1, 60, "  retries: 0\n");
    const locks = tempDir();
    const pids = tempDir();
    const served = await serve(dir);
    const worker = agent(served, join(dir, "agent"), [], {
      ...fakeGpuEnv([{}]),
      LABSWEEP_GPU_LOCK_DIR: locks,
      PIDS_DIR: pids,
    });
    await worker.waitFor(/task 1 \(attempt \d+\) started on GPU 0/);
    expect(readdirSync(locks)).toHaveLength(1);
    while (!existsSync(join(pids, "pid-1"))) await new Promise((resolve) => setTimeout(resolve, 25));
    worker.child.kill("SIGTERM");
    const rw = await worker.result;
    expectCode(rw, 130);
    expect(isAlive(Number(readFileSync(join(pids, "pid-1"), "utf8")))).toBe(false);
    expect(readdirSync(locks)).toEqual([]);
    const { tasks, attempts } = ledger(join(dir, ".labsweep"));
    expect(attempts[0]?.outcome).toBe("preempted");
    expect(tasks[0]).toMatchObject({ state: "pending" }); // back in the queue, no retry spent
    served.child.kill("SIGINT");
    expectCode(await served.result, 130);
  });
});
