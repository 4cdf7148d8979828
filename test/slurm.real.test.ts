/**
 * `labsweep slurm` against a real SLURM: a single-node cluster of this file's own
 * (test/helpers/slurmCluster.ts: munged, slurmctld and slurmd from Debian's slurm-wlm and munge,
 * in a temp dir on 127.0.0.1). Skipped only where SLURM is not installed; `.ci/run` installs it:
 *   sudo apt-get install slurm-wlm munge
 *   npm run build && npx vitest run test/slurm.real.test.ts
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runCli, startCli, tempDir, type Watched, watch, writeFile } from "./helpers/cli.js";
import { type SlurmCluster, slurmBinaries, useSlurmCluster } from "./helpers/slurmCluster.js";

/** A sweep served on loopback, and `labsweep slurm` submitting agents for it to the test cluster. */
interface ServedSweep {
  dir: string;
  url: string;
  token: string;
  served: Watched;
  /** `labsweep slurm --server URL ARGS… --output DIR/slurm`; the array's job id. */
  submit(args: string[]): Promise<string>;
  status(): Promise<{ succeeded: number; failed: number; pending: number; running: number }>;
  /** The coordinator's output and every element's log, for a failing test's message. */
  diagnostics(): string;
  stop(): Promise<void>;
}

async function serveSweep(cluster: SlurmCluster, files: Record<string, string>): Promise<ServedSweep> {
  const dir = tempDir("labsweep-slurm-real-");
  for (const [name, text] of Object.entries(files)) writeFile(dir, name, text);
  // No --exit-when-done: an element that starts late must still find the coordinator, hear that
  // nothing is left, and exit 0.
  const served = watch(startCli(["serve", join(dir, "sweep.yaml"), "--port", "0"], { cwd: dir }), 600_000);
  await served.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
  const url = (/^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(served.output()) as RegExpExecArray)[1] as string;
  const token = (await runCli(["token", "--state", join(dir, ".labsweep")])).stdout.trim();
  const env = { ...cluster.env, LABSWEEP_TOKEN: token };
  return {
    dir,
    url,
    token,
    served,
    async submit(args) {
      const submitted = await runCli(["slurm", "--server", url, ...args, "--output", join(dir, "slurm")], {
        cwd: dir,
        env,
      });
      expect(submitted.code, submitted.stderr).toBe(0);
      return (/^submitted job array (\d+)/m.exec(submitted.stdout) as RegExpExecArray)[1] as string;
    },
    async status() {
      const result = await runCli(["status", "--server", url, "--json"], { env });
      expect(result.code, result.stderr).toBe(0);
      return JSON.parse(result.stdout);
    },
    diagnostics() {
      const logs = join(dir, "slurm");
      const elements = existsSync(logs) ? readdirSync(logs).filter((name) => name.endsWith(".log")) : [];
      return [
        `--- labsweep serve\n${served.output()}`,
        ...elements.map((name) => `--- ${name}\n${readFileSync(join(logs, name), "utf8")}`),
      ].join("\n");
    },
    async stop() {
      served.child.kill("SIGINT");
      expect((await served.result).code).not.toBeNull();
    },
  };
}

/** The element's job log: what its agent said. */
function elementLog(sweep: ServedSweep, jobId: string, index: number): string {
  return readFileSync(join(sweep.dir, "slurm", `labsweep-${jobId}_${index}.log`), "utf8");
}

/** Waits until `file` (in the sweep's dir) holds `lines` lines; returns them. */
async function linesOf(
  sweep: ServedSweep,
  file: string,
  lines: number,
  timeoutMs: number,
): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let text = "";
    try {
      text = readFileSync(join(sweep.dir, file), "utf8");
    } catch {
      // not written yet
    }
    const found = text.split("\n").filter((line) => line !== "");
    if (found.length >= lines) return found;
    if (Date.now() > deadline)
      throw new Error(`${file} has ${found.length} of ${lines} lines:\n${text}\n${sweep.diagnostics()}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/**
 * A task that logs each start (`x element`) to runs.txt; its first attempt runs until it is
 * stopped, a later one (it finds the marker) finishes at once. Each success is logged to done.txt.
 */
const RESUMABLE_TASK = `import json, os, sys, time
x = sys.argv[1]
element = os.environ.get("SLURM_ARRAY_TASK_ID", "?")
with open("runs.txt", "a") as runs:
    runs.write("%s %s\\n" % (x, element))
marker = "started-%s" % x
if not os.path.exists(marker):
    open(marker, "w").close()
    time.sleep(600)
with open("done.txt", "a") as done:
    done.write("%s %s\\n" % (x, element))
json.dump({"x": int(x)}, open(os.environ["LABSWEEP_RESULT_FILE"], "w"))
`;

/** One task, no retry to spend: a stop that spent one would fail it for good. */
const ONE_TASK_SWEEP =
  "command: python3 task.py {x}\nretries: 0\nstop_grace: 5s\np1:\n  output_dir: out\n  combinations:\n    - x: [1]\n";

const installed = slurmBinaries() !== null;

describe.skipIf(!installed)(
  "labsweep slurm on a real single-node SLURM (skipped where slurm-wlm and munge are not installed)",
  () => {
    const cluster = useSlurmCluster();

    it("submits 2 agents as a job array; both register with their element, and the allocation ends with the sweep", async () => {
      const sweep = await serveSweep(cluster(), {
        "task.py": "import time\ntime.sleep(2)\n",
        "sweep.yaml": "command: python3 task.py {x}\np1:\n  combinations:\n    - x: [1, 2, 3, 4]\n",
      });
      const jobId = await sweep.submit(["--agents", "2", "--slots", "1", "--time", "10"]);
      await cluster().waitForJobs(
        (rows) =>
          rows.filter((row) => row.id.startsWith(`${jobId}_`)).every((row) => row.state === "COMPLETED"),
        120_000,
        "both elements completed",
      );
      expect((await sweep.status()).succeeded).toBe(4);
      const agents = JSON.parse(
        (await runCli(["agents", "--server", sweep.url, "--json"], { env: { LABSWEEP_TOKEN: sweep.token } }))
          .stdout,
      ) as { agents: Array<{ info: { slurm?: { jobId: string; arrayTaskId: string | null } | null } }> };
      expect(
        agents.agents
          .map((agent) => agent.info.slurm)
          .sort((a, b) => (a?.arrayTaskId ?? "").localeCompare(b?.arrayTaskId ?? "")),
      ).toEqual([
        { jobId, arrayTaskId: "0" },
        { jobId, arrayTaskId: "1" },
      ]);
      await sweep.stop();
    }, 180_000);

    it("an agent job killed with scancel mid-task: its task runs again elsewhere, exactly once", async () => {
      const sweep = await serveSweep(cluster(), { "task.py": RESUMABLE_TASK, "sweep.yaml": ONE_TASK_SWEEP });
      const jobId = await sweep.submit(["--agents", "2", "--slots", "1"]);
      const [first] = await linesOf(sweep, "runs.txt", 1, 90_000);
      const cancelled = (first as string).split(" ")[1] as string;
      await cluster().waitForJobs(
        (rows) =>
          rows.filter((row) => row.id.startsWith(`${jobId}_`) && row.state === "RUNNING").length === 2,
        60_000,
        "both elements running",
      );
      await cluster().command("scancel", [`${jobId}_${cancelled}`]);

      const runs = await linesOf(sweep, "runs.txt", 2, 90_000);
      const other = cancelled === "0" ? "1" : "0";
      expect(runs).toEqual([`1 ${cancelled}`, `1 ${other}`]);
      // The other element finishes the task and, the sweep done, exits 0.
      await cluster().waitForJobs(
        (found) =>
          found.some((row) => row.id === `${jobId}_${other}` && row.state === "COMPLETED") &&
          found.some((row) => row.id === `${jobId}_${cancelled}` && row.state === "CANCELLED"),
        90_000,
        "the other element completed, the cancelled one cancelled",
      );
      expect(await linesOf(sweep, "done.txt", 1, 1000)).toEqual([`1 ${other}`]);
      const status = await sweep.status();
      expect([status.succeeded, status.failed]).toEqual([1, 0]);
      const csv = readFileSync(join(sweep.dir, "out", "final_results.csv"), "utf8")
        .trim()
        .split("\n");
      expect(csv).toHaveLength(2); // the header and one row
      expect(elementLog(sweep, jobId, Number(cancelled))).toMatch(
        /task 1 \(attempt 1\) preempted: preempted: its agent was sent SIGTERM/,
      );
      await sweep.stop();
    }, 300_000);

    it("a time limit reached mid-task: the attempt is requeued without a retry spent, and the element says the time limit was reached", async () => {
      const sweep = await serveSweep(cluster(), { "task.py": RESUMABLE_TASK, "sweep.yaml": ONE_TASK_SWEEP });
      // slurmctld sends the warning at one of its periodic checks, up to a minute early: with a
      // 3-minute limit and a 90 s warning it comes 30 to 90 s after the start.
      const jobId = await sweep.submit([
        "--agents",
        "1",
        "--slots",
        "1",
        "--time",
        "3",
        "--stop-before",
        "90",
      ]);
      await linesOf(sweep, "runs.txt", 1, 90_000);
      const rows = await cluster().waitForJobs(
        (found) =>
          found.some(
            (row) => row.id === `${jobId}_0` && !["PENDING", "RUNNING", "COMPLETING"].includes(row.state),
          ),
        180_000,
        "the element ended",
      );
      const log = elementLog(sweep, jobId, 0);
      const why = `${JSON.stringify(rows)}\n${sweep.diagnostics()}`;
      // It stopped for the warning, before the limit itself, and said so; exit 0 (COMPLETED).
      expect(rows.find((row) => row.id === `${jobId}_0`)?.state, why).toBe("COMPLETED");
      expect(log, why).toContain("the SLURM job's time limit is near (SIGUSR2)");
      expect(log, why).toMatch(
        /task 1 \(attempt 1\) preempted: preempted: its agent's SLURM job reached its time limit/,
      );
      expect(log, why).toContain("stopped for the SLURM job's time limit: its tasks went back to the queue");
      expect(log, why).not.toContain("stopped by the user");
      const status = await sweep.status();
      expect([status.pending, status.failed], why).toEqual([1, 0]); // retries: 0, so none was spent

      // The requeued task waits for an agent: a second array runs it, once.
      const second = await sweep.submit(["--agents", "1", "--slots", "1"]);
      await cluster().waitForJobs(
        (found) => found.some((row) => row.id === `${second}_0` && row.state === "COMPLETED"),
        90_000,
        "the second element completed",
      );
      expect(await linesOf(sweep, "runs.txt", 2, 1000), sweep.diagnostics()).toEqual(["1 0", "1 0"]);
      expect(await linesOf(sweep, "done.txt", 1, 1000)).toEqual(["1 0"]);
      expect((await sweep.status()).succeeded).toBe(1);
      await sweep.stop();
    }, 300_000);

    it("labsweep's own options win over SBATCH_* variables; --account, --constraint, --sbatch-arg and a CPU per slot reach SLURM", async () => {
      const dir = tempDir("labsweep-slurm-real-");
      const submitted = await runCli(
        [
          "slurm",
          "--server",
          "http://127.0.0.1:9",
          "--agents",
          "2",
          "--slots",
          "3",
          "--time",
          "10",
          "--account",
          "lab-42",
          "--qos",
          "high",
          "--constraint",
          cluster().feature,
          "--partition",
          cluster().partition,
          "--sbatch-arg=--hold", // held: nothing starts
          '--sbatch-arg=--comment=it\'s a "test"',
          "--output",
          join(dir, "slurm"),
        ],
        {
          cwd: dir,
          env: {
            ...cluster().env,
            LABSWEEP_TOKEN: "unused",
            SBATCH_TIMELIMIT: "1",
            SBATCH_ARRAY_INX: "0-9",
            SBATCH_PARTITION: "no-such-partition",
            SBATCH_JOB_NAME: "not-labsweep",
          },
        },
      );
      expect(submitted.code, submitted.stderr).toBe(0);
      expect(submitted.stderr).toContain(
        "note: SBATCH_JOB_NAME, SBATCH_ARRAY_INX, SBATCH_PARTITION, SBATCH_TIMELIMIT in the environment are overridden",
      );
      const jobId = (/^submitted job array (\d+)/m.exec(submitted.stdout) as RegExpExecArray)[1] as string;
      // (A cluster without accounting takes --qos without keeping it: scontrol shows QOS=(null).)
      const job = await cluster().command("scontrol", ["show", "job", jobId]);
      await cluster().command("scancel", [jobId]);
      for (const field of [
        "ArrayTaskId=0-1 ",
        "JobName=labsweep-agents",
        "TimeLimit=00:10:00",
        `Partition=${cluster().partition}`,
        "Account=lab-42",
        "Requeue=0",
        `Features=${cluster().feature}`,
        "CPUs/Task=3",
        `Comment=it's a "test"`,
        "Reason=JobHeldUser",
      ])
        expect(job).toContain(field);
    }, 60_000);
  },
);
