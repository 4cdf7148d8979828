/**
 * The command lines `launcher:` produces, compared exactly with the committed goldens in
 * test/golden/launch/ (one command line per file; UPDATE_GOLDEN=1 rewrites them). Each case goes
 * from config text through the real template renderer, so quoting is what a run would use.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { freePort } from "../src/agent/freePort.js";
import { launchCommand, needsFreePort } from "../src/agent/launchCommand.js";
import { expandPhase } from "../src/sweep/expand.js";
import { parseSweepFile } from "../src/sweep/loadSweep.js";
import type { LauncherSpec, TaskSpec, TorchrunLauncher } from "../src/sweep/types.js";

const goldenDir = join(dirname(fileURLToPath(import.meta.url)), "golden", "launch");

/** The first task of a one-phase config. */
function firstTask(text: string): TaskSpec {
  const phase = parseSweepFile("/sweeps/exp/sweep.yaml", text).phases[0];
  if (!phase) throw new Error("no phase");
  const task = expandPhase(phase).next().value;
  if (!task) throw new Error("no task");
  return task;
}

function expectGolden(name: string, actual: string): void {
  const path = join(goldenDir, `${name}.txt`);
  if (process.env.UPDATE_GOLDEN === "1") {
    mkdirSync(goldenDir, { recursive: true });
    writeFileSync(path, `${actual}\n`);
  }
  if (!existsSync(path))
    throw new Error(`missing golden file ${path}: run with UPDATE_GOLDEN=1 to create it`);
  expect(`${actual}\n`).toBe(readFileSync(path, "utf8"));
}

interface Case {
  name: string;
  config: string;
  gpuIds: number[];
  port?: number;
}

const TRAIN = "command: python train.py --lr {lr}\nexp:\n  defaults: {lr: 0.001}\n";

const HOSTILE = [
  `command: python train.py --name {name} --note "{note}" --tag '{tag}' --out {out}`,
  "launcher: accelerate",
  "exp:",
  "  defaults:",
  `    name: "it's a \\"test\\" $HOME; rm -rf /"`,
  `    note: 'say "hi" $(whoami) \`id\` \\'`,
  `    tag: "don't"`,
  `    out: "my results/run 1"`,
  "",
].join("\n");

const CASES: Case[] = [
  { name: "none", config: TRAIN, gpuIds: [0, 1] },
  { name: "accelerate-1gpu", config: `launcher: accelerate\n${TRAIN}`, gpuIds: [3] },
  { name: "accelerate-2gpu", config: `launcher: accelerate\n${TRAIN}`, gpuIds: [2, 3], port: 41234 },
  {
    name: "accelerate-4gpu-bf16-fixed-port",
    config: `launcher: {name: accelerate, mixed_precision: bf16, main_process_port: 29600}\n${TRAIN}`,
    gpuIds: [0, 1, 2, 3],
  },
  {
    name: "accelerate-1gpu-fp16",
    config: `launcher: {name: accelerate, mixed_precision: fp16}\n${TRAIN}`,
    gpuIds: [5],
  },
  { name: "accelerate-cpu", config: `launcher: accelerate\n${TRAIN}`, gpuIds: [] },
  {
    name: "accelerate-module",
    config: "launcher: accelerate\ncommand: python3 -m pkg.train --lr {lr}\nexp:\n  defaults: {lr: 0.001}\n",
    gpuIds: [0, 1],
    port: 41234,
  },
  {
    name: "accelerate-extra-args",
    config: `launcher:\n  name: accelerate\n  extra_args: [--num_cpu_threads_per_process, 4, --config_file, "my config.yaml", "--dynamo_backend=inductor"]\n${TRAIN}`,
    gpuIds: [0, 1],
    port: 41234,
  },
  { name: "accelerate-hostile-args", config: HOSTILE, gpuIds: [0, 1], port: 41234 },
  { name: "torchrun-1gpu", config: `launcher: torchrun\n${TRAIN}`, gpuIds: [1], port: 41234 },
  { name: "torchrun-2gpu", config: `launcher: torchrun\n${TRAIN}`, gpuIds: [0, 1], port: 41234 },
  {
    name: "torchrun-2gpu-fixed-port",
    config: `launcher: {name: torchrun, master_port: 29700}\n${TRAIN}`,
    gpuIds: [0, 1],
  },
  { name: "torchrun-cpu", config: `launcher: torchrun\n${TRAIN}`, gpuIds: [], port: 41234 },
  {
    name: "torchrun-module-script-form",
    config: "launcher: torchrun\ncommand: -m pkg.train --lr {lr}\nexp:\n  defaults: {lr: 0.001}\n",
    gpuIds: [0, 1],
    port: 41234,
  },
  {
    name: "torchrun-extra-args",
    config: `launcher: {name: torchrun, extra_args: [--max_restarts, 0, "--log_dir", "logs/it's here"]}\ncommand: train.py --lr {lr}\nexp:\n  defaults: {lr: 0.001}\n`,
    gpuIds: [0, 1],
    port: 41234,
  },
];

describe("launchCommand goldens", () => {
  it.each(CASES)("$name", ({ name, config, gpuIds, port }) => {
    const task = firstTask(config);
    expectGolden(name, launchCommand(task.command, task.policy.launcher, gpuIds, { port }));
  });

  it("has a golden for every case and no stale one", () => {
    if (process.env.UPDATE_GOLDEN === "1") return;
    const names = CASES.map((testCase) => `${testCase.name}.txt`).sort();
    const files = readdirNames(goldenDir);
    expect(files).toEqual(names);
  });

  it("passes hostile values and extra args to the script intact through sh", () => {
    const task = firstTask(HOSTILE);
    const line = launchCommand(task.command, task.policy.launcher, [0, 1], { port: 41234 });
    // A stand-in `accelerate` that prints each argument it receives on its own line (NUL-separated).
    const argv = shellArgs(`accelerate() { printf '%s\\0' "$@"; }; ${line}`);
    expect(argv).toEqual([
      "launch",
      "--num_processes",
      "2",
      "--gpu_ids",
      "all",
      "--main_process_port",
      "41234",
      "--multi_gpu",
      "train.py",
      "--name",
      `it's a "test" $HOME; rm -rf /`,
      "--note",
      'say "hi" $(whoami) `id` \\',
      "--tag",
      "don't",
      "--out",
      "my results/run 1",
    ]);
    const extra = firstTask(CASES.find((c) => c.name === "accelerate-extra-args")?.config ?? "");
    const extraLine = launchCommand(extra.command, extra.policy.launcher, [], {});
    expect(shellArgs(`accelerate() { printf '%s\\0' "$@"; }; ${extraLine}`)).toEqual([
      "launch",
      "--num_processes",
      "1",
      "--cpu",
      "--num_cpu_threads_per_process",
      "4",
      "--config_file",
      "my config.yaml",
      "--dynamo_backend=inductor",
      "train.py",
      "--lr",
      "0.001",
    ]);
  });
});

function shellArgs(script: string): string[] {
  const out = execFileSync("/bin/sh", ["-c", script], { encoding: "utf8" });
  return out.split("\0").slice(0, -1);
}

function readdirNames(dir: string): string[] {
  return readdirSync(dir).sort();
}

describe("launchCommand rules", () => {
  const accelerate: LauncherSpec = {
    name: "accelerate",
    mixedPrecision: null,
    mainProcessPort: "auto",
    extraArgs: [],
  };
  const torchrun: TorchrunLauncher = { name: "torchrun", masterPort: "auto", extraArgs: [] };

  it("returns the command untouched without a launcher", () => {
    expect(launchCommand("cd x && make", null, [0, 1])).toBe("cd x && make");
  });

  it("refuses a command that does not start with a Python script or module", () => {
    expect(() => launchCommand("cd src && python train.py", accelerate, [0])).toThrow(/Python script/);
    expect(() => launchCommand("python -u train.py", torchrun, [0])).toThrow(/Python script/);
  });

  it("strips only a bare python or python3, keeping the rest byte for byte", () => {
    const fixed = { ...torchrun, masterPort: 29500 };
    expect(launchCommand("  python3   train.py  --a  1", fixed, [0])).toBe(
      "torchrun --nnodes 1 --node_rank 0 --nproc_per_node 1 --master_addr 127.0.0.1 --master_port 29500 train.py  --a  1",
    );
    expect(launchCommand("scripts/train.py --a 1 && echo done", fixed, [0])).toBe(
      "torchrun --nnodes 1 --node_rank 0 --nproc_per_node 1 --master_addr 127.0.0.1 --master_port 29500 scripts/train.py --a 1 && echo done",
    );
  });

  it("asks for a free port only when the launcher will use an auto port", () => {
    expect(needsFreePort(null, [0, 1])).toBe(false);
    expect(needsFreePort(accelerate, [0])).toBe(false);
    expect(needsFreePort(accelerate, [0, 1])).toBe(true);
    expect(needsFreePort({ ...accelerate, mainProcessPort: 29600 }, [0, 1])).toBe(false);
    // torchrun meets its processes through a TCP store even with one process or on the CPU.
    expect(needsFreePort(torchrun, [0, 1])).toBe(true);
    expect(needsFreePort(torchrun, [])).toBe(true);
    expect(needsFreePort({ ...torchrun, masterPort: 29600 }, [0])).toBe(false);
  });

  it("throws when an auto port is needed but none is passed", () => {
    expect(() => launchCommand("train.py", accelerate, [0, 1])).toThrow(/no free port/);
    expect(() => launchCommand("train.py", torchrun, [0])).toThrow(/no free port/);
  });
});

describe("freePort", () => {
  it("returns distinct ports that can be bound on 127.0.0.1", async () => {
    const ports = [await freePort(), await freePort(), await freePort()];
    expect(new Set(ports).size).toBe(3);
    for (const port of ports) {
      expect(port).toBeGreaterThan(0);
      expect(port).toBeLessThan(65536);
      const server = createServer();
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen({ port, host: "127.0.0.1" }, resolve);
      });
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
