/**
 * `gpu_memory_gb` is checked against the GPU's free memory at lease time, not at start-up: a
 * GPU that another user's process filled while labsweep ran is skipped. Real `labsweep run`,
 * fake nvidia-smi reading a file the test rewrites. Run `npm run build` first.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { collect, runCli, startCli, tempDir, writeFile } from "./helpers/cli.js";
import { fakeGpuFile } from "./helpers/fakeGpus.js";

describe("free GPU memory at lease time", () => {
  it("does not start a task on a GPU that filled up since start-up, and starts it once memory is free", async () => {
    const dir = tempDir();
    const gpus = fakeGpuFile([{ memoryTotalMiB: 24_576, memoryFreeMiB: 24_000 }]);
    try {
      // Task 1 signals that it runs, then waits for the test; task 2 only records that it ran.
      writeFile(
        dir,
        "task.sh",
        'if [ "$1" = 1 ]; then touch first.started; while [ ! -e first.go ]; do sleep 0.05; done; else touch second.ran; fi\n',
      );
      const config = writeFile(
        dir,
        "sweep.yaml",
        "command: sh task.sh {i}\nmem:\n  output_dir: out\n  resources: {gpus: 1, gpu_memory_gb: 8}\n  combinations:\n    - i: [1, 2]\n",
      );
      const run = startCli(["run", config, "--slots", "1", "--progress-every", "3600"], {
        cwd: dir,
        env: gpus.env,
      });
      const finished = collect(run, 60_000);
      const deadline = Date.now() + 20_000;
      while (!existsSync(join(dir, "first.started")) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 25));
      expect(existsSync(join(dir, "first.started"))).toBe(true);
      // Someone else's job takes the GPU while task 1 runs: 2 GB left, task 2 needs 8.
      gpus.write([{ memoryTotalMiB: 24_576, memoryFreeMiB: 2_000 }]);
      await new Promise((r) => setTimeout(r, 1200)); // past the agent's 1 s re-measure interval
      writeFile(dir, "first.go", "");
      const result = await finished;
      expect(existsSync(join(dir, "second.ran"))).toBe(false);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/1 tasks need more than this machine offers/);

      gpus.write([{ memoryTotalMiB: 24_576, memoryFreeMiB: 24_000 }]);
      const again = await runCli(["run", config, "--slots", "1", "--progress-every", "3600"], {
        cwd: dir,
        env: gpus.env,
      });
      expect(again.code, again.stderr).toBe(0);
      expect(existsSync(join(dir, "second.ran"))).toBe(true);
    } finally {
      gpus.remove();
    }
  });
});
