/**
 * `labsweep slurm` against a real SLURM: a single-node cluster (slurmctld + slurmd + munge, e.g.
 * from Debian's slurm-wlm) already running on this machine. Skipped where there is none — CI does
 * not install SLURM, so this runs only on a developer's or a cluster's machine:
 *   sudo apt-get install slurm-wlm   # then a one-node slurm.conf, and start munge, slurmctld, slurmd
 *   npm run build && npx vitest run test/slurm.real.test.ts
 */
import { execFileSync, spawnSync } from "node:child_process";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { findOnPath } from "../src/slurm/submit.js";
import { runCli, startCli, tempDir, watch, writeFile } from "./helpers/cli.js";

/** slurmctld and slurmd installed, and `sinfo` answered by a running controller. */
function slurmIsRunning(): boolean {
  if (!findOnPath("slurmctld") || !findOnPath("slurmd") || !findOnPath("sbatch")) return false;
  return spawnSync("sinfo", ["--noheader"], { timeout: 5000, stdio: "ignore" }).status === 0;
}

const hasSlurm = slurmIsRunning();
const submitted: string[] = [];

afterEach(() => {
  for (const jobId of submitted.splice(0)) spawnSync("scancel", [jobId], { stdio: "ignore" });
});

function inQueue(jobId: string): boolean {
  return execFileSync("squeue", ["--noheader", "--jobs", jobId], { encoding: "utf8" }).trim() !== "";
}

describe.skipIf(!hasSlurm)(
  "labsweep slurm on a real single-node SLURM (skipped: slurmctld/slurmd are not installed or not running here)",
  () => {
    it("submits 2 agents as a job array; both register with their element, and the allocation ends with the sweep", async () => {
      const dir = tempDir("labsweep-slurm-real-");
      writeFile(dir, "task.py", "import time\ntime.sleep(2)\n");
      writeFile(
        dir,
        "sweep.yaml",
        "command: python3 task.py {x}\np1:\n  combinations:\n    - x: [1, 2, 3, 4]\n",
      );
      // No --exit-when-done: an element that starts late must still find the coordinator, hear that
      // nothing is left, and exit 0.
      const served = watch(startCli(["serve", join(dir, "sweep.yaml"), "--port", "0"], { cwd: dir }));
      await served.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
      const url = (/^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(served.output()) as RegExpExecArray)[1] as string;
      const token = (await runCli(["token", "--state", join(dir, ".labsweep")])).stdout.trim();
      const submit = await runCli(
        [
          "slurm",
          "--server",
          url,
          "--agents",
          "2",
          "--slots",
          "1",
          "--time",
          "10",
          "--output",
          join(dir, "slurm"),
        ],
        { cwd: dir, env: { LABSWEEP_TOKEN: token } },
      );
      expect(submit.code, submit.stderr).toBe(0);
      const jobId = (/^submitted job array (\d+)/m.exec(submit.stdout) as RegExpExecArray)[1] as string;
      submitted.push(jobId);

      const deadline = Date.now() + 120_000;
      while (inQueue(jobId) && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 1000));
      expect(inQueue(jobId), "the array still holds its allocation").toBe(false);

      const status = JSON.parse(
        (await runCli(["status", "--server", url, "--json"], { env: { LABSWEEP_TOKEN: token } })).stdout,
      ) as {
        succeeded: number;
      };
      expect(status.succeeded).toBe(4);
      const agents = JSON.parse(
        (await runCli(["agents", "--server", url, "--json"], { env: { LABSWEEP_TOKEN: token } })).stdout,
      ) as {
        agents: Array<{ info: { slurm?: { jobId: string; arrayTaskId: string | null } | null } }>;
      };
      expect(
        agents.agents
          .map((agent) => agent.info.slurm)
          .sort((a, b) => (a?.arrayTaskId ?? "").localeCompare(b?.arrayTaskId ?? "")),
      ).toEqual([
        { jobId, arrayTaskId: "0" },
        { jobId, arrayTaskId: "1" },
      ]);
      served.child.kill("SIGINT");
      expect((await served.result).code).not.toBeNull();
    }, 180_000);
  },
);
