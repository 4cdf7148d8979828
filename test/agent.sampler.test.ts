import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  type GpuReader,
  gpuReader,
  processGroupRss,
  type SampleSummary,
  TaskSampler,
} from "../src/agent/sampler.js";
import { type FakeGpu, fakeBinDir, fakeGpuEnv, fakeGpuFile } from "./helpers/fakeGpus.js";

const cleanup: Array<() => void> = [];
afterEach(() => {
  for (const step of cleanup.splice(0).reverse()) step();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `sh -c SCRIPT` leading a process group of its own, as runProcess starts tasks; killed after the test. */
function startGroup(script: string): { pid: number; exited: Promise<void> } {
  const child: ChildProcess = spawn("sh", ["-c", script], { detached: true, stdio: "ignore" });
  const pid = child.pid as number;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  cleanup.push(() => {
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // already gone
    }
  });
  return { pid, exited };
}

/** A gpuReader over `env` that counts the readings it has answered (or failed). */
function countingReader(env?: NodeJS.ProcessEnv): {
  reader: GpuReader;
  untilAnswered: (count: number) => Promise<void>;
} {
  const inner = gpuReader({ env, timeoutMs: 5000 });
  let answered = 0;
  return {
    reader: {
      read: (maxAgeMs) =>
        inner.read(maxAgeMs).finally(() => {
          answered++;
        }),
    },
    // A loaded machine can take a while to start the fake nvidia-smi: wait up to 10 s.
    async untilAnswered(count) {
      const deadline = performance.now() + 10_000;
      while (answered < count && performance.now() < deadline) await sleep(20);
    },
  };
}

/**
 * Samples a `sleep` for at least `ms` and until two GPU readings have come back. Returns the
 * summary and how long the sampler ran (ms).
 */
async function sampleFor(
  ms: number,
  options: { gpuIndices: number[]; env?: NodeJS.ProcessEnv; during?: () => Promise<void> },
): Promise<{ summary: SampleSummary; elapsedMs: number }> {
  const { pid } = startGroup("exec sleep 30");
  const { reader, untilAnswered } = countingReader(options.env);
  const started = performance.now();
  const sampler = new TaskSampler({
    processGroup: pid,
    gpuIndices: options.gpuIndices,
    intervalMs: 200,
    gpus: reader,
  });
  await Promise.all([sleep(ms), options.during?.(), untilAnswered(2)]);
  const summary = sampler.stop();
  return { summary, elapsedMs: performance.now() - started };
}

function fakeFile(gpus: FakeGpu[]) {
  const file = fakeGpuFile(gpus);
  cleanup.push(() => file.remove());
  return file;
}

describe("processGroupRss", () => {
  it("finds nothing for a process group that does not exist", () => {
    expect(processGroupRss(2 ** 30)).toEqual({ rssKiB: 0, pids: new Set() });
  });

  it("shares one pass over /proc between the samplers it can serve, and makes another for the rest", () => {
    const before = performance.now();
    processGroupRss(2 ** 30); // a pass made now, before the task below started
    const task = startGroup("sleep 5");
    // A caller that takes a pass made before the task started gets that one: the task is not in it.
    expect(processGroupRss(task.pid, before)?.pids).toEqual(new Set());
    const started = performance.now();
    // The group: the task's shell, and whatever it forked (a shell may not exec its last command).
    expect(processGroupRss(task.pid, started)?.pids.has(task.pid)).toBe(true);
    // That later pass serves the next caller that needs one made since the task started.
    expect(processGroupRss(task.pid, started)?.rssKiB).toBeGreaterThan(0);
  });
});

describe("TaskSampler: memory of the process tree", () => {
  it("sums the resident memory of every process in the task's group", async () => {
    const task = startGroup(
      `python3 -c "x=bytearray(60_000_000); import time; time.sleep(1.5)" & ` +
        `python3 -c "y=bytearray(30_000_000); import time; time.sleep(1.5)"; wait`,
    );
    const sampler = new TaskSampler({ processGroup: task.pid, gpuIndices: [], intervalMs: 100 });
    await task.exited;
    const summary = sampler.stop();
    // 90,000,000 bytes of arrays are 85.8 MiB, plus two interpreters and a shell; nothing else.
    expect(summary.peak_rss_mb).toBeGreaterThanOrEqual(85);
    expect(summary.peak_rss_mb).toBeLessThan(400);
    expect(summary.samples).toBeGreaterThanOrEqual(5);
    expect(summary).toMatchObject({ gpu_util_mean: null, gpu_mem_peak_mb: null, energy_wh: null });
    expect(sampler.stop()).toBe(summary); // idempotent
  });

  it("stops sampling at stop()", async () => {
    const { pid } = startGroup("exec sleep 30");
    const sampler = new TaskSampler({ processGroup: pid, gpuIndices: [], intervalMs: 50 });
    const { samples } = sampler.stop();
    await sleep(300);
    expect(samples).toBe(1); // the first sample is taken at once
    expect(sampler.stop().samples).toBe(1);
  });

  it("takes the first sample only after firstAfterMs: a task shorter than that costs no scan", async () => {
    const { pid } = startGroup("exec sleep 30");
    const short = new TaskSampler({ processGroup: pid, gpuIndices: [], intervalMs: 50, firstAfterMs: 100 });
    await sleep(30);
    expect(short.stop().samples).toBe(0);
    // Unmeasured is unknown, not 0 MB: the results CSV shows a blank cell.
    expect(short.stop().peak_rss_mb).toBeNull();
    await sleep(200);
    expect(short.stop().samples).toBe(0);
    const longer = new TaskSampler({ processGroup: pid, gpuIndices: [], intervalMs: 50, firstAfterMs: 100 });
    await sleep(300);
    const summary = longer.stop();
    expect(summary.samples).toBeGreaterThanOrEqual(2);
    expect(summary.peak_rss_mb).toBeGreaterThan(0);
  });
});

describe("TaskSampler: GPUs", () => {
  it("integrates constant power into energy and reports utilisation and memory", async () => {
    const file = fakeFile([{ powerW: 100, utilization: 40, memoryUsedMiB: 1000 }, { powerW: 300 }]);
    const { summary, elapsedMs } = await sampleFor(2000, { gpuIndices: [0], env: file.env });
    expect(summary.energy_wh as number).toBeGreaterThan((100 * 2) / 3600);
    expect(summary.energy_wh as number).toBeLessThan((100 * 2.2) / 3600);
    // Exactly: a constant reading, held to both ends of the run.
    expect(Math.abs((summary.energy_wh as number) - (100 * elapsedMs) / 1000 / 3600)).toBeLessThan(1e-4);
    expect(summary.gpu_util_mean).toBe(40);
    expect(summary.gpu_mem_peak_mb).toBe(1000);
    expect(summary.samples).toBeGreaterThanOrEqual(8);
  });

  it("sums power and memory over the task's GPUs and averages their utilisation", async () => {
    const gpus: FakeGpu[] = [
      { powerW: 100, utilization: 50, memoryUsedMiB: 1000 },
      { powerW: 999, utilization: 0, memoryUsedMiB: 9999 },
      { powerW: 200, utilization: 100, memoryUsedMiB: 3000 },
    ];
    const { summary, elapsedMs } = await sampleFor(1000, { gpuIndices: [0, 2], env: fakeGpuEnv(gpus) });
    expect(Math.abs((summary.energy_wh as number) - (300 * elapsedMs) / 1000 / 3600)).toBeLessThan(1e-4);
    expect(summary.gpu_util_mean).toBe(75);
    expect(summary.gpu_mem_peak_mb).toBe(4000);
  });

  it("follows readings that change over time: trapezoids with the ends held, the mean, the peak", async () => {
    // Readings from a script rather than the fake nvidia-smi, so the expected values can be
    // computed from exactly the readings the sampler took, whatever the machine's load.
    const script = [
      { watts: 100, util: 0, mem: 1000 },
      { watts: 100, util: 0, mem: 1000 },
      { watts: 300, util: 100, mem: 5000 },
      { watts: 300, util: 100, mem: 2000 },
      { watts: 50, util: 20, mem: 2000 },
      { watts: 50, util: 20, mem: 2000 },
    ];
    const taken: Array<{ at: number; watts: number; util: number; mem: number }> = [];
    const reader: GpuReader = {
      async read() {
        await sleep(30);
        const step = script[Math.min(taken.length, script.length - 1)] as (typeof script)[number];
        const at = performance.now();
        taken.push({ at, ...step });
        return {
          at,
          gpus: [
            {
              index: 0,
              uuid: "GPU-a",
              utilizationPercent: step.util,
              memoryUsedMiB: step.mem,
              powerW: step.watts,
            },
          ],
          processes: [],
        };
      },
    };
    const { pid } = startGroup("exec sleep 30");
    const before = performance.now();
    const sampler = new TaskSampler({ processGroup: pid, gpuIndices: [0], intervalMs: 100, gpus: reader });
    const after = performance.now();
    while (taken.length < script.length) await sleep(10);
    const stopping = performance.now();
    const summary = sampler.stop();
    const stopped = performance.now();

    let joules = 0;
    for (let i = 1; i < taken.length; i++) {
      const [a, b] = [taken[i - 1], taken[i]] as [(typeof taken)[number], (typeof taken)[number]];
      joules += ((a.watts + b.watts) / 2) * ((b.at - a.at) / 1000);
    }
    const first = taken[0] as (typeof taken)[number];
    const last = taken.at(-1) as (typeof taken)[number];
    const wattHours = (start: number, end: number) =>
      (joules + (first.watts * (first.at - start) + last.watts * (end - last.at)) / 1000) / 3600;
    expect(summary.energy_wh as number).toBeGreaterThanOrEqual(wattHours(after, stopping) - 1e-6);
    expect(summary.energy_wh as number).toBeLessThanOrEqual(wattHours(before, stopped) + 1e-6);
    const utilMean = taken.reduce((total, step) => total + step.util, 0) / taken.length;
    expect(summary.gpu_util_mean).toBeCloseTo(utilMean, 1);
    expect(summary.gpu_mem_peak_mb).toBe(5000);
  });

  it("takes the memory of the task's own processes when nvidia-smi lists them", async () => {
    const file = fakeFile([{ memoryUsedMiB: 20_000 }]);
    const { pid } = startGroup("exec sleep 30");
    const { reader, untilAnswered } = countingReader(file.env);
    const sampler = new TaskSampler({ processGroup: pid, gpuIndices: [0], intervalMs: 200, gpus: reader });
    await untilAnswered(2);
    // Other users' processes share the GPU; the task's one appears once it has a CUDA context.
    const processes = [
      { pid: 1, usedMemoryMiB: 15_000 },
      { pid, usedMemoryMiB: 1234 },
    ];
    file.write([{ memoryUsedMiB: 20_000, processes }]);
    await untilAnswered(5); // one may have been on its way before the write
    expect(sampler.stop().gpu_mem_peak_mb).toBe(1234);
  });

  it("reports null for values the GPU does not report, and energy only with every GPU's power", async () => {
    const gpus: FakeGpu[] = [
      { powerW: null, utilization: "[Not Supported]", memoryUsedMiB: 500 },
      { powerW: 80 },
    ];
    const { summary } = await sampleFor(500, { gpuIndices: [0, 1], env: fakeGpuEnv(gpus) });
    expect(summary.energy_wh).toBeNull();
    expect(summary.gpu_util_mean).toBe(0); // GPU 1's 0 %, GPU 0 not counted
    expect(summary.gpu_mem_peak_mb).toBe(500); // GPU 1: all free, 0 used
  });

  it("leaves the GPU fields null, and still samples memory, when nvidia-smi is missing", async () => {
    const empty = mkdtempSync(join(tmpdir(), "labsweep-no-smi-"));
    cleanup.push(() => rmSync(empty, { recursive: true, force: true }));
    const { summary } = await sampleFor(600, { gpuIndices: [0], env: { PATH: empty } });
    expect(summary).toMatchObject({ gpu_util_mean: null, gpu_mem_peak_mb: null, energy_wh: null });
    expect(summary.samples).toBeGreaterThanOrEqual(3);
    expect(summary.peak_rss_mb).toBeGreaterThan(0);
  });

  it("leaves the GPU fields null when the driver is not loaded, or the GPU is not listed", async () => {
    const unloaded = { ...fakeGpuEnv([{}]), LABSWEEP_FAKE_NVIDIA_DRIVER: "unloaded" };
    const [a, b] = await Promise.all([
      sampleFor(500, { gpuIndices: [0], env: unloaded }),
      sampleFor(500, { gpuIndices: [3], env: fakeGpuEnv([{}]) }),
    ]);
    for (const { summary } of [a, b])
      expect(summary).toMatchObject({ gpu_util_mean: null, gpu_mem_peak_mb: null, energy_wh: null });
  });

  it("never piles up calls to an nvidia-smi that hangs, and stops at once", async () => {
    const dir = mkdtempSync(join(tmpdir(), "labsweep-hung-smi-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const calls = join(dir, "calls");
    const hung = join(dir, "nvidia-smi");
    writeFileSync(hung, `#!/bin/sh\necho call >> "${calls}"\nexec sleep 5\n`);
    chmodSync(hung, 0o755);
    const { pid } = startGroup("exec sleep 30");
    const sampler = new TaskSampler({
      processGroup: pid,
      gpuIndices: [0],
      intervalMs: 100,
      gpus: gpuReader({ command: hung, timeoutMs: 700 }),
    });
    await sleep(1000);
    const summary = sampler.stop();
    expect(summary).toMatchObject({ gpu_util_mean: null, energy_wh: null });
    expect(summary.samples).toBeGreaterThanOrEqual(8);
    // One reading is two calls (--query-gpu and --query-compute-apps); the 700 ms timeout
    // ends the first pair, so at most two pairs in 1 s of 100 ms samples.
    const count = readFileSync(calls, "utf8").trim().split("\n").length;
    expect(count).toBeLessThanOrEqual(4);
  });
});

describe("gpuReader", () => {
  it("shares a reading in flight or recent enough between callers", async () => {
    const dir = mkdtempSync(join(tmpdir(), "labsweep-count-smi-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const calls = join(dir, "calls");
    const counting = join(dir, "nvidia-smi");
    writeFileSync(
      counting,
      `#!/bin/sh\necho "$1" >> "${calls}"\nexec "${join(fakeBinDir, "nvidia-smi")}" "$@"\n`,
    );
    chmodSync(counting, 0o755);
    const reader = gpuReader({ command: counting, env: fakeGpuEnv([{ powerW: 90 }]) });
    const [first, second] = await Promise.all([reader.read(0), reader.read(0)]);
    expect(second).toBe(first);
    expect(first.gpus).toEqual([
      { index: 0, uuid: expect.stringMatching(/^GPU-/), utilizationPercent: 0, memoryUsedMiB: 0, powerW: 90 },
    ]);
    expect(first.processes).toEqual([]);
    expect(await reader.read(60_000)).toBe(first);
    const third = await reader.read(0);
    expect(third).not.toBe(first);
    expect(third.at).toBeGreaterThan(first.at);
    const lines = readFileSync(calls, "utf8").trim().split("\n").sort();
    expect(lines).toEqual([
      "--query-compute-apps=gpu_uuid,pid,used_memory",
      "--query-compute-apps=gpu_uuid,pid,used_memory",
      "--query-gpu=index,uuid,utilization.gpu,memory.used,power.draw",
      "--query-gpu=index,uuid,utilization.gpu,memory.used,power.draw",
    ]);
  });

  it("lists every GPU's compute processes, memory it cannot report as null", async () => {
    const env = fakeGpuEnv([
      { processes: [{ pid: 41, usedMemoryMiB: 900 }] },
      { processes: [{ pid: 42, usedMemoryMiB: null }] },
    ]);
    const reading = await gpuReader({ env }).read(0);
    const [first, second] = reading.gpus.map((gpu) => gpu.uuid);
    expect(reading.processes).toEqual([
      { gpuUuid: first, pid: 41, usedMemoryMiB: 900 },
      { gpuUuid: second, pid: 42, usedMemoryMiB: null },
    ]);
  });

  it("rejects when nvidia-smi fails, so the sample records nothing", async () => {
    const reader = gpuReader({ env: { ...fakeGpuEnv([{}]), LABSWEEP_FAKE_NVIDIA_DRIVER: "unloaded" } });
    await expect(reader.read(0)).rejects.toThrow(/no usable GPU/);
  });
});
