import { describe, expect, it } from "vitest";
import type { GpuInfo } from "../src/agent/gpuProbe.js";
import { cudaVisibleDevices, planSlots } from "../src/agent/slots.js";

const GB = 1024;

function gpu(index: number, freeGb: number): GpuInfo {
  return {
    index,
    uuid: `GPU-${index}`,
    name: "NVIDIA GeForce RTX 3090",
    memoryTotalMiB: 24 * GB,
    memoryFreeMiB: freeGb * GB,
    memoryUsedMiB: (24 - freeGb) * GB,
    utilizationPercent: 0,
    powerW: 70,
    driverVersion: "550.54.15",
  };
}

const pinned = (...gpuIndices: number[]) => gpuIndices.map((g, index) => ({ index, gpuIndices: [g] }));

describe("planSlots", () => {
  it("gives each GPU with at least 4 GB free one slot pinned to it", () => {
    const gpus = [gpu(0, 20), gpu(1, 4), gpu(2, 3.99), gpu(3, 0)];
    expect(planSlots({ gpus, cpuCount: 16 })).toEqual(pinned(0, 1));
  });

  it("honours a different free-memory threshold", () => {
    const gpus = [gpu(0, 20), gpu(1, 4)];
    expect(planSlots({ gpus, cpuCount: 16, minFreeGb: 8 })).toEqual(pinned(0));
    expect(planSlots({ gpus: [gpu(0, 0)], cpuCount: 16, minFreeGb: 0 })).toEqual(pinned(0));
  });

  it("falls back to one CPU slot per core when no GPU qualifies", () => {
    const cpuSlots = [0, 1, 2].map((index) => ({ index, gpuIndices: [] }));
    expect(planSlots({ gpus: [], cpuCount: 3 })).toEqual(cpuSlots);
    expect(planSlots({ gpus: [gpu(0, 1)], cpuCount: 3 })).toEqual(cpuSlots);
    expect(planSlots({ gpus: [], cpuCount: 0 })).toEqual([{ index: 0, gpuIndices: [] }]);
  });

  it("spreads an override round-robin over the qualifying GPUs", () => {
    const gpus = [gpu(1, 20), gpu(0, 20), gpu(2, 1)];
    expect(planSlots({ gpus, cpuCount: 16, slotsOverride: 4 })).toEqual(pinned(0, 1, 0, 1));
    expect(planSlots({ gpus, cpuCount: 16, slotsOverride: 1 })).toEqual(pinned(0));
  });

  it("gives an override CPU-only slots when no GPU qualifies", () => {
    expect(planSlots({ gpus: [gpu(0, 1)], cpuCount: 16, slotsOverride: 2 })).toEqual([
      { index: 0, gpuIndices: [] },
      { index: 1, gpuIndices: [] },
    ]);
  });

  it("rejects an override that is not a positive whole number", () => {
    expect(() => planSlots({ gpus: [], cpuCount: 4, slotsOverride: 0 })).toThrow(/positive whole number/);
    expect(() => planSlots({ gpus: [], cpuCount: 4, slotsOverride: 1.5 })).toThrow(/positive whole number/);
  });

  it("uses only the GPUs the filter names", () => {
    const gpus = [gpu(0, 20), gpu(1, 20), gpu(2, 20), gpu(3, 1)];
    expect(planSlots({ gpus, cpuCount: 16, gpuFilter: [0, 2] })).toEqual(pinned(0, 2));
    expect(planSlots({ gpus, cpuCount: 16, gpuFilter: [2], slotsOverride: 2 })).toEqual(pinned(2, 2));
    expect(planSlots({ gpus, cpuCount: 2, gpuFilter: [3] })).toEqual([
      { index: 0, gpuIndices: [] },
      { index: 1, gpuIndices: [] },
    ]);
  });

  it("rejects a filter naming a GPU the machine does not have", () => {
    expect(() => planSlots({ gpus: [gpu(0, 20), gpu(1, 20)], cpuCount: 4, gpuFilter: [0, 5] })).toThrow(
      "GPU filter names GPU 5, but this machine has GPUs 0,1",
    );
    expect(() => planSlots({ gpus: [], cpuCount: 4, gpuFilter: [0] })).toThrow(/this machine has no GPUs/);
  });
});

describe("cudaVisibleDevices", () => {
  it("lists a slot's GPUs, or nothing for a CPU slot", () => {
    expect(cudaVisibleDevices({ index: 0, gpuIndices: [0, 2] })).toBe("0,2");
    expect(cudaVisibleDevices({ index: 1, gpuIndices: [3] })).toBe("3");
    expect(cudaVisibleDevices({ index: 2, gpuIndices: [] })).toBe("");
  });
});
