/**
 * End to end on real torch: two `launcher: torchrun` tasks of two processes each run at the same
 * time on one machine (gloo on the CPU; four fake GPUs only make labsweep give each task two
 * processes). Each task's ranks meet on 127.0.0.1 on a port of the task's own: with
 * `--standalone` (torch < 2.1 binds port 29400 there) the second task collided with the first.
 * Needs torch where `torchrun` runs (Debian: `apt-get install python3-torch`); skipped, saying
 * so, only when `torchrun` cannot import torch. Run `npm run build` first.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runCli, tempDir, writeFile } from "./helpers/cli.js";
import { fakeGpuEnv } from "./helpers/fakeGpus.js";

const probe = spawnSync("torchrun", ["--help"], { encoding: "utf8", timeout: 60_000 });
const torchMissing =
  probe.status === 0
    ? null
    : `torchrun cannot run here (${probe.error?.message ?? probe.stderr.trim().split("\n").pop()}): install torch, e.g. apt-get install python3-torch`;
if (torchMissing) console.warn(`e2e.torchrun skipped: ${torchMissing}`);

/**
 * Every rank joins a gloo group and sums its rank + 1; rank 0 then waits until the other task
 * has started too (so both tasks hold their rendezvous at once) and reports what it saw.
 */
const TRAIN = `import json, os, sys, time
import torch
import torch.distributed as dist
task = sys.argv[sys.argv.index("--task") + 1]
here = os.path.dirname(os.path.abspath(__file__))
dist.init_process_group("gloo")
total = torch.tensor([dist.get_rank() + 1.0])
dist.all_reduce(total)
if dist.get_rank() == 0:
    open(os.path.join(here, "started-" + task), "w").close()
    other = os.path.join(here, "started-" + ("2" if task == "1" else "1"))
    deadline = time.time() + 120
    while not os.path.exists(other) and time.time() < deadline:
        time.sleep(0.05)
    with open(os.environ["LABSWEEP_RESULT_FILE"], "w") as result:
        json.dump({
            "rank_sum": total.item(),
            "world": dist.get_world_size(),
            "master_addr": os.environ["MASTER_ADDR"],
            "master_port": int(os.environ["MASTER_PORT"]),
            "met_other": os.path.exists(other),
        }, result)
dist.barrier()
dist.destroy_process_group()
`;

describe.skipIf(torchMissing !== null)("launcher: torchrun on real torch", () => {
  it("runs two 2-process tasks at once on one machine, each on its own port on 127.0.0.1", async () => {
    const dir = tempDir("labsweep-torchrun-");
    writeFile(dir, "train.py", TRAIN);
    writeFile(
      dir,
      "sweep.yaml",
      `command: python train.py --task {task}
# Debian 12's torch 1.13 on Python 3.11 crashes on the default --redirects/--tee "0" (an
# IntFlag change in 3.11); a mapping for a local rank that does not exist means "none" there too.
launcher: {name: torchrun, extra_args: [--redirects, "9:1", --tee, "9:1"]}
resources: {gpus: 2}
retries: 0
exp:
  output_dir: results
  combinations:
    - task: [1, 2]
`,
    );
    const gpus = Array.from({ length: 4 }, () => ({ memoryFreeMiB: 20_000 }));
    const result = await runCli(["run", join(dir, "sweep.yaml")], {
      cwd: dir,
      env: { ...fakeGpuEnv(gpus), GLOO_SOCKET_IFNAME: "lo", OMP_NUM_THREADS: "1" },
      timeoutMs: 240_000,
    });
    expect(result.code, `${result.stderr}\n${result.stdout}`).toBe(0);
    const [header, ...rows] = readFileSync(join(dir, "results", "final_results.csv"), "utf8")
      .trim()
      .split("\n");
    const columns = (header ?? "").split(",");
    const records = rows.map((row) =>
      Object.fromEntries(row.split(",").map((cell, i) => [columns[i], cell])),
    );
    expect(records).toHaveLength(2);
    for (const record of records) {
      expect(Number(record.rank_sum), JSON.stringify(record)).toBe(3);
      expect(Number(record.world)).toBe(2);
      expect(record.master_addr).toBe("127.0.0.1");
      expect(record.met_other?.toLowerCase()).toBe("true");
    }
    expect(records[0]?.master_port).not.toBe(records[1]?.master_port);
  }, 300_000);
});
