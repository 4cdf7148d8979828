import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { parseGpuCsv, probeGpus } from "../src/agent/gpuProbe.js";
import { type FakeGpu, fakeGpuEnv, fakeGpuFile } from "./helpers/fakeGpus.js";

const run = promisify(execFile);
const CSV = "--format=csv,noheader,nounits";

const twoGpus: FakeGpu[] = [
  {
    name: "NVIDIA GeForce RTX 3090",
    memoryTotalMiB: 24576,
    memoryFreeMiB: 20000,
    utilization: 5,
    powerW: 71.43,
  },
  {
    name: "NVIDIA A100-SXM4-80GB",
    memoryTotalMiB: 81920,
    memoryFreeMiB: 1024,
    utilization: 97,
    powerW: 301.5,
  },
];

async function fakeSmi(args: string[], env: NodeJS.ProcessEnv) {
  try {
    const { stdout, stderr } = await run("nvidia-smi", args, { env });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

describe("fake nvidia-smi", () => {
  it("prints the real csv,noheader,nounits lines for the requested fields", async () => {
    const fields =
      "index,uuid,name,memory.total,memory.free,memory.used,utilization.gpu,power.draw,driver_version";
    const result = await fakeSmi([`--query-gpu=${fields}`, CSV], fakeGpuEnv(twoGpus));
    expect(result).toEqual({
      code: 0,
      stderr: "",
      stdout:
        "0, GPU-b2011b6b-0f3c-36b0-c839-abbd0c7ff82d, NVIDIA GeForce RTX 3090, 24576, 20000, 4576, 5, 71.43, 550.54.15\n" +
        "1, GPU-451e292d-e87e-cbea-6fc4-db6d896dbe46, NVIDIA A100-SXM4-80GB, 81920, 1024, 80896, 97, 301.50, 550.54.15\n",
    });
  });

  it("honours the order of the requested fields", async () => {
    const result = await fakeSmi(["--query-gpu=pci.bus_id,memory.free,index", CSV], fakeGpuEnv(twoGpus));
    expect(result.stdout).toBe("00000000:01:00.0, 20000, 0\n00000000:02:00.0, 1024, 1\n");
  });

  it("adds the header and units unless asked not to", async () => {
    const result = await fakeSmi(
      ["--query-gpu=index,memory.free,power.draw", "--format=csv"],
      fakeGpuEnv(twoGpus),
    );
    expect(result.stdout).toBe(
      "index, memory.free [MiB], power.draw [W]\n0, 20000 MiB, 71.43 W\n1, 1024 MiB, 301.50 W\n",
    );
  });

  it("rejects an unknown field the way the real tool does", async () => {
    const result = await fakeSmi(["--query-gpu=index,gpu_temp", CSV], fakeGpuEnv(twoGpus));
    expect(result.code).toBe(2);
    expect(result.stdout).toBe("");
    expect(result.stderr.split("\n")[0]).toBe('Field "gpu_temp" is not a valid field to query.');
  });

  it("reports no devices with exit code 6 when no GPU is configured", async () => {
    const result = await fakeSmi(["--query-gpu=index", CSV], fakeGpuEnv([]));
    expect(result).toMatchObject({ code: 6, stdout: "No devices were found\n" });
  });

  it("lists no compute apps", async () => {
    const result = await fakeSmi(["--query-compute-apps=pid,used_memory", CSV], fakeGpuEnv(twoGpus));
    expect(result).toEqual({ code: 0, stdout: "", stderr: "" });
  });
});

describe("probeGpus", () => {
  it("returns [] on a machine without GPUs", async () => {
    expect(await probeGpus({ env: fakeGpuEnv([]) })).toEqual([]);
  });

  it("returns [] when the driver is not loaded (exit code 9)", async () => {
    const env = { ...fakeGpuEnv(twoGpus), LABSWEEP_FAKE_NVIDIA_DRIVER: "unloaded" };
    expect(await probeGpus({ env })).toEqual([]);
  });

  it("returns [] when nvidia-smi is not on PATH", async () => {
    const emptyDir = mkdtempSync(join(tmpdir(), "labsweep-no-smi-"));
    try {
      expect(await probeGpus({ env: { PATH: emptyDir } })).toEqual([]);
    } finally {
      rmSync(emptyDir, { recursive: true });
    }
  });

  it("reads every field of one GPU", async () => {
    expect(await probeGpus({ env: fakeGpuEnv([twoGpus[0] as FakeGpu]) })).toEqual([
      {
        index: 0,
        uuid: "GPU-b2011b6b-0f3c-36b0-c839-abbd0c7ff82d",
        name: "NVIDIA GeForce RTX 3090",
        memoryTotalMiB: 24576,
        memoryFreeMiB: 20000,
        memoryUsedMiB: 4576,
        utilizationPercent: 5,
        powerW: 71.43,
        driverVersion: "550.54.15",
      },
    ]);
  });

  it("reads four GPUs in index order with distinct UUIDs", async () => {
    const gpus = await probeGpus({ env: fakeGpuEnv([{}, {}, { memoryFreeMiB: 100 }, {}]) });
    expect(gpus.map((gpu) => gpu.index)).toEqual([0, 1, 2, 3]);
    expect(new Set(gpus.map((gpu) => gpu.uuid)).size).toBe(4);
    expect(gpus.map((gpu) => gpu.memoryFreeMiB)).toEqual([24576, 24576, 100, 24576]);
  });

  it("turns values the GPU does not report into null", async () => {
    const [gpu] = await probeGpus({ env: fakeGpuEnv([{ powerW: null, utilization: "[Not Supported]" }]) });
    expect(gpu).toMatchObject({ powerW: null, utilizationPercent: null, memoryTotalMiB: 24576 });
  });

  it("sees free memory change between calls when the GPUs live in a file", async () => {
    const file = fakeGpuFile([{ memoryFreeMiB: 24000 }]);
    try {
      expect((await probeGpus({ env: file.env }))[0]?.memoryFreeMiB).toBe(24000);
      file.write([{ memoryFreeMiB: 512 }]);
      expect((await probeGpus({ env: file.env }))[0]?.memoryFreeMiB).toBe(512);
    } finally {
      file.remove();
    }
  });

  it("throws an error naming the command when nvidia-smi fails otherwise", async () => {
    const probe = probeGpus({ command: "false", env: fakeGpuEnv(twoGpus) });
    await expect(probe).rejects.toThrow(/^false --query-gpu=index,.* failed \(exit code 1\)$/);
    await expect(probe).rejects.toHaveProperty("cause.code", 1);
  });

  it("gives up on an nvidia-smi that hangs", async () => {
    const dir = mkdtempSync(join(tmpdir(), "labsweep-hung-smi-"));
    const hung = join(dir, "nvidia-smi");
    writeFileSync(hung, "#!/bin/sh\nexec sleep 10\n", { mode: 0o755 });
    try {
      await expect(probeGpus({ command: hung, timeoutMs: 200 })).rejects.toThrow(/timed out after 200 ms$/);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});

describe("parseGpuCsv", () => {
  it("keeps a comma inside a GPU name", () => {
    const [gpu] = parseGpuCsv("0, GPU-1, Odd GPU, Rev 2, 100, 50, 50, [N/A], [N/A], [N/A]\n");
    expect(gpu).toMatchObject({
      name: "Odd GPU, Rev 2",
      memoryFreeMiB: 50,
      powerW: null,
      driverVersion: null,
    });
  });

  it("rejects a GPU whose memory is not reported, because slots depend on it", () => {
    expect(() => parseGpuCsv("0, GPU-1, Odd GPU, [N/A], 50, 50, 1, 1, 550")).toThrow(
      /memory.total is "\[N\/A\]"/,
    );
  });
});
