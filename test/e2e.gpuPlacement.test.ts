/**
 * GPU placement never oversubscribes: a running task's GPU share and `gpu_memory_gb` stay reserved
 * until it ends, an idle GPU is preferred over sharing one, `--slots` only caps how many tasks run,
 * and a task that fits nowhere is told with the short resource. Real `labsweep run`, fake
 * nvidia-smi. Run `npm run build` first.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runCli, startCli, tempDir, watch, writeFile } from "./helpers/cli.js";
import { type FakeGpu, fakeGpuEnv } from "./helpers/fakeGpus.js";

/**
 * Each task records the GPUs it saw, and marks its GPUs busy (mkdir, atomic) while it runs: a
 * second task on a GPU already marked leaves an `overlap-*` file behind.
 */
const TASK = `for g in $(echo "$CUDA_VISIBLE_DEVICES" | tr , ' '); do
  if mkdir "busy-$g" 2>/dev/null; then echo "$g" >> "held-$1"; else touch "overlap-$1-$g"; fi
done
echo "$CUDA_VISIBLE_DEVICES" > "gpus-$1"
sleep 0.4
for g in $(cat "held-$1" 2>/dev/null); do rmdir "busy-$g"; done
`;

function sweep(dir: string, resources: string, count: number): string {
  writeFile(dir, "task.sh", TASK);
  const values = Array.from({ length: count }, (_, index) => index + 1).join(", ");
  return writeFile(
    dir,
    "sweep.yaml",
    `command: sh task.sh {i}\nplace:\n  output_dir: out\n  resources: ${resources}\n  combinations:\n    - i: [${values}]\n`,
  );
}

async function run(dir: string, config: string, gpus: FakeGpu[], slots: number) {
  const result = await runCli(["run", config, "--slots", String(slots), "--progress-every", "3600"], {
    cwd: dir,
    env: fakeGpuEnv(gpus),
  });
  return result;
}

function overlaps(dir: string): string[] {
  return readdirSync(dir).filter((name) => name.startsWith("overlap-"));
}

describe("GPU placement", () => {
  it("reserves gpu_memory_gb until a task ends: two 12 GB halves never share a GPU with 19.5 GB free", async () => {
    const dir = tempDir();
    const config = sweep(dir, "{gpus: 0.5, gpu_memory_gb: 12}", 2);
    const result = await run(dir, config, [{ memoryTotalMiB: 24_576, memoryFreeMiB: 19_968 }], 2);
    expect(result.code, result.stderr).toBe(0);
    expect(existsSync(join(dir, "gpus-1")) && existsSync(join(dir, "gpus-2"))).toBe(true);
    expect(overlaps(dir)).toEqual([]);
  });

  it("puts two halves on two idle GPUs rather than sharing one", async () => {
    const dir = tempDir();
    const config = sweep(dir, "{gpus: 0.5}", 2);
    const gpus = [{ memoryFreeMiB: 24_576 }, { memoryFreeMiB: 24_576 }];
    const result = await run(dir, config, gpus, 2);
    expect(result.code, result.stderr).toBe(0);
    const seen = [1, 2].map((i) => readFileSync(join(dir, `gpus-${i}`), "utf8").trim());
    expect(new Set(seen)).toEqual(new Set(["0", "1"]));
  });

  it("--slots 2 with one usable GPU runs whole-GPU tasks one at a time", async () => {
    const dir = tempDir();
    const config = sweep(dir, "{gpus: 1}", 3);
    const result = await run(dir, config, [{ memoryFreeMiB: 24_576 }], 2);
    expect(result.code, result.stderr).toBe(0);
    for (const i of [1, 2, 3]) expect(readFileSync(join(dir, `gpus-${i}`), "utf8").trim()).toBe("0");
    expect(overlaps(dir)).toEqual([]);
  });

  it("--slots 2 with one GPU still runs two halves at once", async () => {
    const dir = tempDir();
    // Each half waits for the other to start: only passes when both run at the same time.
    writeFile(
      dir,
      "task.sh",
      'touch "started-$1"; o=$((3 - $1)); n=0\nwhile [ ! -e "started-$o" ] && [ $n -lt 400 ]; do sleep 0.05; n=$((n+1)); done\n[ -e "started-$o" ]\n',
    );
    const config = writeFile(
      dir,
      "sweep.yaml",
      "command: sh task.sh {i}\nplace:\n  resources: {gpus: 0.5}\n  retries: 0\n  combinations:\n    - i: [1, 2]\n",
    );
    const result = await run(dir, config, [{ memoryFreeMiB: 24_576 }], 2);
    expect(result.code, result.stderr).toBe(0);
  });

  it("says which resource is short when a task fits nowhere", async () => {
    const dir = tempDir();
    const config = sweep(dir, "{gpus: 1, gpu_memory_gb: 30}", 1);
    const result = await run(dir, config, [{ memoryTotalMiB: 24_576, memoryFreeMiB: 24_576 }], 1);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /phase place \(1 tasks\): needs 30 GB of free GPU memory; the largest GPU has 24 GB free/,
    );
  });

  it("a remote agent that nothing fits says which resource is short", async () => {
    const dir = tempDir();
    const config = sweep(dir, "{gpus: 1, gpu_memory_gb: 30}", 1);
    const served = watch(startCli(["serve", config, "--port", "0"], { cwd: dir }));
    try {
      await served.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
      const url = (/^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(served.output()) as RegExpExecArray)[1] as string;
      const token = (await runCli(["token", "--state", join(dir, ".labsweep")])).stdout.trim();
      const agent = await runCli(
        ["agent", "--server", url, `--token=${token}`, "--state", join(dir, "agent")],
        {
          cwd: dir,
          env: fakeGpuEnv([{ memoryTotalMiB: 24_576, memoryFreeMiB: 24_576 }]),
        },
      );
      expect(agent.code, agent.stderr).toBe(0);
      expect(agent.stderr).toMatch(
        /nothing here fits phase place \(1 tasks\): needs 30 GB of free GPU memory; the largest GPU has 24 GB\n/,
      );
    } finally {
      served.child.kill("SIGTERM");
      await served.result;
    }
  });
});
