/**
 * End to end: the resources each task used (agent/sampler.ts) land in final_results.csv after
 * wall_seconds and in `labsweep status`. Run `npm run build` first: these tests run bin/labsweep.js.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { describe, expect, it } from "vitest";
import { type CliResult, runCli, tempDir, writeFile } from "./helpers/cli.js";
import { fakeGpuEnv } from "./helpers/fakeGpus.js";

const TASK = `import json, os, sys, time
x = int(sys.argv[1])
ballast = bytearray(50_000_000)  # 47.7 MiB resident
time.sleep(2.2)
with open(os.environ["LABSWEEP_RESULT_FILE"], "w") as f:
    json.dump({"acc": x / 10}, f)
`;

const SWEEP = `command: python3 task.py {x}
train:
  output_dir: out
  combinations:
    - x: [1, 2]
`;

function sweepDir(): string {
  const dir = tempDir();
  writeFile(dir, "task.py", TASK);
  writeFile(dir, "sweep.yaml", SWEEP);
  return dir;
}

function expectCode(result: CliResult, code: number): void {
  expect(result.code, `labsweep exited ${result.code}:\n${result.stderr}`).toBe(code);
}

function readCsv(path: string): { header: string[]; rows: Record<string, string>[] } {
  const [header = [], ...rows] = parse(readFileSync(path, "utf8")) as string[][];
  return {
    header,
    rows: rows.map((cells) => Object.fromEntries(header.map((name, index) => [name, cells[index] ?? ""]))),
  };
}

const HEADER = [
  "phase",
  "x",
  "acc",
  "wall_seconds",
  "peak_rss_mb",
  "gpu_util_mean",
  "gpu_mem_peak_mb",
  "energy_wh",
  "attempts",
  "host",
  "gpu_ids",
];

describe("resource usage", () => {
  it("writes each GPU task's peak RSS, GPU utilisation, memory and energy, and totals them in status", async () => {
    const dir = sweepDir();
    // Two GPUs, so the two tasks run side by side, one on each.
    const env = fakeGpuEnv([
      { memoryFreeMiB: 20_000, utilization: 80, powerW: 150 },
      { memoryFreeMiB: 16_000, utilization: 30, powerW: 250 },
    ]);
    const result = await runCli(["run", join(dir, "sweep.yaml")], { cwd: dir, env });
    expectCode(result, 0);

    const { header, rows } = readCsv(join(dir, "out", "final_results.csv"));
    expect(header).toEqual(HEADER);
    expect(rows.map((row) => row.gpu_ids).sort()).toEqual(["0", "1"]);
    for (const row of rows) {
      const gpu =
        row.gpu_ids === "0"
          ? { util: 80, used: 24_576 - 20_000, watts: 150 }
          : { util: 30, used: 24_576 - 16_000, watts: 250 };
      expect(Number(row.peak_rss_mb)).toBeGreaterThan(47);
      expect(Number(row.peak_rss_mb)).toBeLessThan(300);
      expect(Number(row.gpu_util_mean)).toBe(gpu.util);
      expect(Number(row.gpu_mem_peak_mb)).toBe(gpu.used);
      // The power held over the sampled run: the task's wall time but for its launch (writing
      // its files, forking), which comes before its pid is known.
      const wattHours = (seconds: number) => (gpu.watts * seconds) / 3600;
      expect(Number(row.energy_wh)).toBeGreaterThan(wattHours(Number(row.wall_seconds) - 1.5));
      expect(Number(row.energy_wh)).toBeLessThan(wattHours(Number(row.wall_seconds) + 0.05));
    }

    const status = await runCli(["status", join(dir, "sweep.yaml"), "--json"], { cwd: dir });
    expectCode(status, 0);
    const usage = (JSON.parse(status.stdout) as { usage: { energy_wh: number; peak_rss_mb_max: number } })
      .usage;
    const energies = rows.map((row) => Number(row.energy_wh));
    expect(usage.energy_wh).toBeCloseTo((energies[0] as number) + (energies[1] as number), 3);
    expect(usage.peak_rss_mb_max).toBe(Math.max(...rows.map((row) => Number(row.peak_rss_mb))));

    const text = await runCli(["status", join(dir, "sweep.yaml")], { cwd: dir });
    expectCode(text, 0);
    expect(text.stdout).toContain(
      `usage: ${usage.energy_wh} Wh GPU energy, largest peak RSS ${usage.peak_rss_mb_max} MB`,
    );
  });

  it("leaves the GPU columns empty for CPU tasks and still reports their memory", async () => {
    const dir = sweepDir();
    const result = await runCli(["run", join(dir, "sweep.yaml"), "--slots", "2"], {
      cwd: dir,
      env: fakeGpuEnv([]),
    });
    expectCode(result, 0);
    const { header, rows } = readCsv(join(dir, "out", "final_results.csv"));
    expect(header).toEqual(HEADER);
    expect(rows).toHaveLength(2);
    for (const row of rows) {
      expect(Number(row.peak_rss_mb)).toBeGreaterThan(47);
      expect(row).toMatchObject({ gpu_util_mean: "", gpu_mem_peak_mb: "", energy_wh: "", gpu_ids: "" });
    }
    const status = await runCli(["status", join(dir, "sweep.yaml"), "--json"], { cwd: dir });
    expectCode(status, 0);
    expect(JSON.parse(status.stdout).usage).toEqual({
      energy_wh: null,
      peak_rss_mb_max: Math.max(...rows.map((row) => Number(row.peak_rss_mb))),
    });
  });
});
