/**
 * What an agent tells the coordinator about its machine (also `labsweep doctor`): CPUs, RAM,
 * GPUs from (fake) nvidia-smi, driver and CUDA versions, tags, and configured probes. The doctor
 * tests run the built CLI (run `npm run build` first).
 */
import { cpus } from "node:os";
import { describe, expect, it } from "vitest";
import { describeMachine, parseCudaVersion, parseProbe, runProbes } from "../src/agent/capabilities.js";
import { probeGpus } from "../src/agent/gpuProbe.js";
import { runCli } from "./helpers/cli.js";
import { type FakeGpu, fakeGpuEnv } from "./helpers/fakeGpus.js";

const twoGpus: FakeGpu[] = [
  { name: "NVIDIA GeForce RTX 3090", memoryTotalMiB: 24576, memoryFreeMiB: 20000 },
  { name: "NVIDIA A100-SXM4-80GB", memoryTotalMiB: 81920, memoryFreeMiB: 1024 },
];

// The header of plain `nvidia-smi` on a real machine.
const NVIDIA_SMI_HEADER = `Fri Nov 22 07:00:00 2024
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
`;

describe("probes", () => {
  it("parses NAME=COMMAND, keeping '=' inside the command", () => {
    expect(parseProbe('torch=python3 -c "import torch"')).toEqual({
      name: "torch",
      command: 'python3 -c "import torch"',
    });
    expect(parseProbe("env=test a=b")).toEqual({ name: "env", command: "test a=b" });
  });

  it("rejects a probe without a name or a command, saying what one looks like", () => {
    expect(() => parseProbe("python3 -c 'import torch'")).toThrow(/NAME=COMMAND/);
    expect(() => parseProbe("torch=")).toThrow(/NAME=COMMAND/);
    expect(() => parseProbe("bad name=true")).toThrow(/NAME=COMMAND/);
  });

  it("passes when the command exits 0, fails otherwise, and fails when it outlives the timeout", async () => {
    const started = Date.now();
    const results = await runProbes(
      [
        { name: "ok", command: "exit 0" },
        { name: "fails", command: "exit 3" },
        { name: "missing", command: "definitely-not-a-command-labsweep" },
        { name: "python", command: 'python3 -c "import json"' },
        { name: "hangs", command: "sleep 30" },
      ],
      // python3 alone can take over a second to start on a loaded two-core machine.
      { timeoutMs: 3000 },
    );
    expect(results).toEqual({ ok: true, fails: false, missing: false, python: true, hangs: false });
    expect(Date.now() - started).toBeLessThan(15_000);
  });
});

describe("the capability record", () => {
  it("reads the CUDA version from nvidia-smi's header, or null", () => {
    expect(parseCudaVersion(NVIDIA_SMI_HEADER)).toBe("12.4");
    expect(parseCudaVersion("no header here")).toBeNull();
  });

  it("describes CPUs, RAM, GPUs, the driver, tags and probes", async () => {
    const env = fakeGpuEnv(twoGpus);
    const gpus = await probeGpus({ env });
    const record = await describeMachine({
      agentId: "agent-1",
      name: "box",
      slots: 1,
      gpus: gpus.slice(0, 1),
      allGpus: gpus,
      tags: ["a100", "big", "a100"],
      probes: [
        { name: "yes", command: "true" },
        { name: "no", command: "false" },
      ],
      probeOptions: { env: { ...env, SLURM_JOB_ID: "77", SLURM_ARRAY_TASK_ID: "3" } },
    });
    expect(record).toMatchObject({
      agentId: "agent-1",
      name: "box",
      pid: process.pid,
      slots: 1,
      cpus: expect.any(Number),
      ramMb: expect.any(Number),
      gpus: [
        {
          index: 0,
          uuid: gpus[0]?.uuid,
          name: "NVIDIA GeForce RTX 3090",
          memoryTotalMiB: 24576,
          memoryFreeMiB: 20000,
        },
      ],
      driverVersion: "550.54.15",
      // The fake prints no header: a CUDA version it cannot tell is null, not a guess.
      cudaVersion: null,
      tags: ["a100", "big"],
      probes: { yes: true, no: false },
      slurm: { jobId: "77", arrayTaskId: "3" },
    });
    expect(record.cpus).toBeGreaterThanOrEqual(1);
    expect(record.cpus).toBeLessThanOrEqual(cpus().length);
    expect(record.ramMb).toBeGreaterThan(100);
  });

  it("has no GPUs and no driver on a machine without them", async () => {
    const env = fakeGpuEnv([]);
    const record = await describeMachine({
      agentId: "a",
      slots: 2,
      gpus: await probeGpus({ env }),
      probeOptions: { env },
    });
    expect(record).toMatchObject({
      gpus: [],
      driverVersion: null,
      cudaVersion: null,
      probes: {},
      slurm: null,
    });
  });
});

describe("labsweep doctor", () => {
  it("--json prints one JSON object: the capability record without an agent id", async () => {
    const result = await runCli(["doctor", "--json", "--probe", "yes=true", "--tag", "t1"], {
      env: fakeGpuEnv(twoGpus),
    });
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.trim().split("\n");
    expect(lines).toHaveLength(1);
    const report = JSON.parse(lines[0] as string);
    expect(report).toMatchObject({
      agentId: null,
      slots: 1, // only the 3090 has 4 GB free
      driverVersion: "550.54.15",
      tags: ["t1"],
      probes: { yes: true },
    });
    expect(report.gpus.map((gpu: { name: string }) => gpu.name)).toEqual([
      "NVIDIA GeForce RTX 3090",
      "NVIDIA A100-SXM4-80GB",
    ]);
  });

  it("exits 1 when a probe fails, and says which", async () => {
    const result = await runCli(
      ["doctor", "--probe", "torch=python3 -c 'import no_such_module_x'", "--probe", "sh=true"],
      {
        env: fakeGpuEnv(twoGpus),
      },
    );
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/probes\s+torch FAILED, sh ok/);
    expect(result.stdout).toMatch(/gpus\s+0 {2}NVIDIA GeForce RTX 3090 {2}20000\/24576 MiB free/);
    expect(result.stdout).toMatch(/driver\s+550\.54\.15/);
    // Why, on stderr, and a last line giving the exit's reason.
    expect(result.stderr).toMatch(
      /^labsweep doctor: probe torch failed: exit code 1: ModuleNotFoundError: No module named 'no_such_module_x'$/m,
    );
    expect(result.stderr.trim().split("\n").at(-1)).toBe(
      "labsweep doctor: exit 1 because 1 of 2 probes failed (torch)",
    );
  });

  it("says a probe that ran past --probe-timeout timed out, with --json output kept to one object", async () => {
    const result = await runCli(["doctor", "--json", "--probe", "slow=sleep 5", "--probe-timeout", "0.2"], {
      env: fakeGpuEnv([]),
    });
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout)).toMatchObject({ probes: { slow: false } });
    expect(result.stderr).toMatch(/^labsweep doctor: probe slow failed: did not finish within 0\.2 s/m);
    expect(result.stderr.trim().split("\n").at(-1)).toBe(
      "labsweep doctor: exit 1 because 1 of 1 probe failed (slow)",
    );
  });

  it("rejects a malformed --probe as bad input (exit 2)", async () => {
    const result = await runCli(["doctor", "--probe", "no-equals-sign"], { env: fakeGpuEnv([]) });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--probe: a probe is NAME=COMMAND/);
  });
});
