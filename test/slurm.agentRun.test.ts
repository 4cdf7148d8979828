/**
 * The script `labsweep slurm --dry-run` prints, run by bash as SLURM would run one array element
 * (SLURM_ARRAY_JOB_ID=42, SLURM_ARRAY_TASK_ID=3, LABSWEEP_TOKEN in the environment) against a real
 * `labsweep serve` on loopback: the agent registers as element 42_3 and exits 0 when the sweep is
 * done, which is what releases a SLURM allocation. Run `npm run build` first.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CLI, collect, runCli, startCli, tempDir, watch, writeFile } from "./helpers/cli.js";
import { fakeGpuEnv } from "./helpers/fakeGpus.js";

// Each task also writes down the environment it got: no labsweep token may be in it.
const TASK_PY = `import json, os, sys, time
json.dump(dict(os.environ), open("env-%s.json" % sys.argv[1], "w"))
time.sleep(1.5)
json.dump({"x2": int(sys.argv[1]) * 2}, open(os.environ["LABSWEEP_RESULT_FILE"], "w"))
`;

const SWEEP = "command: python3 task.py {x}\np1:\n  output_dir: out\n  combinations:\n    - x: [1, 2]\n";

interface AgentView {
  host: string;
  info: { slots?: number; slurm?: { jobId: string; arrayTaskId: string | null } | null };
}

const jobs = new Set<ChildProcess>();
afterEach(() => {
  const leaked = [...jobs].filter((job) => job.exitCode === null && job.signalCode === null);
  for (const job of leaked) job.kill("SIGKILL");
  jobs.clear();
  if (leaked.length > 0) throw new Error(`test left ${leaked.length} job script(s) running`);
});

async function agentsOf(url: string, token: string): Promise<AgentView[]> {
  const result = await runCli(["agents", "--server", url, "--json"], { env: { LABSWEEP_TOKEN: token } });
  if (result.code !== 0) throw new Error(`labsweep agents exited ${result.code}: ${result.stderr}`);
  return (JSON.parse(result.stdout) as { agents: AgentView[] }).agents;
}

describe("the generated sbatch script, run by bash as one array element", () => {
  it("starts an agent that registers as 42_3, runs the sweep and exits 0 when it is done", async () => {
    const dir = tempDir("labsweep-slurm-run-");
    writeFile(dir, "task.py", TASK_PY);
    writeFile(dir, "sweep.yaml", SWEEP);
    const served = watch(
      startCli(["serve", join(dir, "sweep.yaml"), "--exit-when-done", "--port", "0"], { cwd: dir }),
    );
    await served.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
    const url = (/^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(served.output()) as RegExpExecArray)[1] as string;
    const token = (await runCli(["token", "--state", join(dir, ".labsweep")])).stdout.trim();
    expect(token).not.toBe("");

    // A hostile output dir: the agent's state dir inside it must reach the agent intact.
    const output = join(dir, `job's "out" $(touch PWNED) ✓`);
    const dry = await runCli(
      ["slurm", "--server", url, "--agents", "4", "--slots", "1", "--output", output, "--dry-run"],
      { cwd: dir },
    );
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).not.toContain(token);
    const script = writeFile(dir, "labsweep-agents.sbatch", dry.stdout);

    const job = spawn("bash", [script], {
      cwd: dir,
      env: {
        ...fakeGpuEnv([]),
        LABSWEEP_GPU_LOCK_DIR: tempDir(),
        SLURM_ARRAY_JOB_ID: "42",
        SLURM_ARRAY_TASK_ID: "3",
        LABSWEEP_TOKEN: token,
        // Whatever else a user exported: no labsweep token reaches a task.
        LABSWEEP_ADMIN_TOKEN: "admin-secret-in-the-job-env",
        LABSWEEP_VIEWER_TOKEN: "viewer-secret-in-the-job-env",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    jobs.add(job);
    const jobResult = collect(job, 60_000);

    // While it runs, the coordinator lists it with its array element.
    let listed: AgentView[] = [];
    const deadline = Date.now() + 20_000;
    while (listed.length === 0 && Date.now() < deadline) {
      listed = await agentsOf(url, token);
      if (listed.length === 0) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(listed).toHaveLength(1);
    expect(listed[0]?.info.slurm).toEqual({ jobId: "42", arrayTaskId: "3" });
    expect(listed[0]?.info.slots).toBe(1);

    const [rj, rs] = await Promise.all([jobResult, served.result]);
    expect(rj.code, rj.stderr).toBe(0);
    expect(rj.stderr).toContain("the coordinator has nothing left for this machine; exiting");
    expect(rs.code, rs.stderr).toBe(0);

    // The ledger keeps the element too (`labsweep agents` without a server reads it).
    const after = await runCli(["agents", "--state", join(dir, ".labsweep")]);
    expect(after.stdout).toMatch(/ slurm 42_3/);
    expect(existsSync(join(output, "agents", "42_3", "agent.json"))).toBe(true);
    expect(existsSync(join(dir, "PWNED"))).toBe(false);
    const csv = readFileSync(join(dir, "out", "final_results.csv"), "utf8");
    expect(csv.trim().split("\n")).toHaveLength(3); // header + both tasks

    // The tasks ran with the agent's environment, less every labsweep token.
    for (const x of [1, 2]) {
      const env = JSON.parse(readFileSync(join(dir, `env-${x}.json`), "utf8")) as Record<string, string>;
      expect(env.SLURM_ARRAY_JOB_ID).toBe("42");
      expect(env.LABSWEEP_TASK_ID).toMatch(/^\d+$/);
      expect(Object.keys(env).filter((key) => /^LABSWEEP_.*TOKEN/i.test(key))).toEqual([]);
      for (const secret of [token, "admin-secret-in-the-job-env", "viewer-secret-in-the-job-env"])
        expect(JSON.stringify(env)).not.toContain(secret);
    }
  });

  // [name, signal, sent to the whole job (SLURM's scancel and time limit) or its batch shell alone, exit code, …]
  const STOPS: Array<[string, NodeJS.Signals, "job" | "shell", number, RegExp, RegExp]> = [
    [
      "SIGTERM to every process of the job, the task first (scancel, preemption, the time limit itself), stops it and its tasks, exit 130",
      "SIGTERM",
      "job",
      130,
      /terminating running tasks/,
      /^preempted: its agent was sent SIGTERM/,
    ],
    [
      "SIGUSR2 (--signal's warning before the time limit) stops it and its tasks for the time limit, exit 0",
      "SIGUSR2",
      "shell",
      0,
      /the SLURM job's time limit is near \(SIGUSR2\)[\s\S]*stopped for the SLURM job's time limit: its tasks went back to the queue without a retry spent/,
      /^preempted: its agent's SLURM job reached its time limit/,
    ],
  ];

  it.each(STOPS)("is the agent after exec: %s", async (_name, signal, to, code, said, requeued) => {
    const dir = tempDir("labsweep-slurm-run-");
    writeFile(dir, "task.py", "import os, time\nopen('pid', 'w').write(str(os.getpid()))\ntime.sleep(60)\n");
    // No retry to spend: an attempt taken for failed would fail the task for good.
    const sweep = "command: python3 task.py {x}\nretries: 0\np1:\n  combinations:\n    - x: [1]\n";
    writeFile(dir, "sweep.yaml", sweep);
    const served = watch(startCli(["serve", join(dir, "sweep.yaml"), "--port", "0"], { cwd: dir }));
    await served.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
    const url = (/^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(served.output()) as RegExpExecArray)[1] as string;
    const token = (await runCli(["token", "--state", join(dir, ".labsweep")])).stdout.trim();
    const dry = await runCli(["slurm", "--server", url, "--agents", "1", "--output", dir, "--dry-run"], {
      cwd: dir,
    });
    const job = watch(
      spawn("bash", [writeFile(dir, "job.sbatch", dry.stdout)], {
        cwd: dir,
        env: {
          ...fakeGpuEnv([]),
          LABSWEEP_GPU_LOCK_DIR: tempDir(),
          SLURM_ARRAY_JOB_ID: "43",
          SLURM_ARRAY_TASK_ID: "0",
          LABSWEEP_TOKEN: token,
        },
        stdio: ["ignore", "pipe", "pipe"],
      }),
    );
    jobs.add(job.child);
    await job.waitFor(/task 1 \(attempt \d+\) started/);
    while (!existsSync(join(dir, "pid"))) await new Promise((resolve) => setTimeout(resolve, 25));
    const taskPid = Number(readFileSync(join(dir, "pid"), "utf8"));
    // The bash process became the agent: its command line is node running labsweep.
    const cmdline = readFileSync(`/proc/${job.child.pid}/cmdline`, "utf8").split("\0");
    expect(cmdline.slice(0, 3)).toEqual([process.execPath, CLI, "agent"]);
    // SLURM signals each process of the job (its task and launcher too) as it finds them: the
    // task's copy may well come first, and the task die of it before the agent hears its own.
    const agent = job.child.pid as number;
    if (to === "job") for (const pid of [...descendantsOf(agent)].reverse()) killIfAlive(pid, signal);
    process.kill(agent, signal);
    const result = await job.result;
    expect(result.code, result.stderr).toBe(code);
    expect(result.stderr).toMatch(said);
    expect(result.stderr).not.toContain("stopped by the user");
    // The attempt went back to the queue with no retry spent, saying why.
    const status = JSON.parse(
      (await runCli(["status", "--server", url, "--json"], { env: { LABSWEEP_TOKEN: token } })).stdout,
    ) as { pending: number; failed: number; recentRequeues: Array<{ why: string }> };
    expect([status.pending, status.failed]).toEqual([1, 0]);
    expect(status.recentRequeues.map((requeue) => requeue.why)).toEqual([expect.stringMatching(requeued)]);
    const deadline = Date.now() + 5000;
    while (existsSync(`/proc/${taskPid}`) && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 50));
    expect(existsSync(`/proc/${taskPid}`), `task process ${taskPid}`).toBe(false);
    served.child.kill("SIGINT");
    await served.result;
  });
});

/** A process listed a moment ago may have exited since (a shell's short-lived child): not an error. */
function killIfAlive(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
  }
}

/** Every live descendant of `pid`, parents before children, from /proc. */
function descendantsOf(pid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const name of readdirSync("/proc")) {
    if (!/^[0-9]+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "latin1");
      parentOf.set(Number(name), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      // exited meanwhile
    }
  }
  const found: number[] = [];
  for (let frontier = [pid]; frontier.length > 0; ) {
    const children = [...parentOf].filter(([, parent]) => frontier.includes(parent)).map(([child]) => child);
    found.push(...children);
    frontier = children;
  }
  return found;
}
