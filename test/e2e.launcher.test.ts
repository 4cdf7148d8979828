/**
 * End to end: `launcher:` through `labsweep run`, with fake `accelerate` and `torchrun` on PATH
 * (they record their arguments and CUDA_VISIBLE_DEVICES, then run the script with python3) and a
 * fake nvidia-smi. Run `npm run build` first: these tests run bin/labsweep.js, which runs dist/.
 */
import { chmodSync, mkdirSync, readFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import { describe, expect, it } from "vitest";
import { type CliResult, runCli, tempDir, writeFile } from "./helpers/cli.js";
import { type FakeGpu, fakeGpuEnv } from "./helpers/fakeGpus.js";

/** Skips the launcher's own options (its flags, and `launch` for accelerate), then runs python3. */
const FAKE_LAUNCHER = `#!/bin/sh
name=$(basename "$0")
python3 - "$name" "$@" <<'PY'
import json, os, sys
with open(os.environ["FAKE_LAUNCH_RECORD"], "a") as record:
    record.write(json.dumps({
        "launcher": sys.argv[1],
        "argv": sys.argv[2:],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }) + "\\n")
PY
[ "$name" = accelerate ] && shift
module=
while [ $# -gt 0 ]; do
  case $1 in
    --multi_gpu|--cpu|--standalone) shift ;;
    -m) module=-m; shift ;;
    --*=*) shift ;;
    --*) shift 2 ;;
    *) break ;;
  esac
done
exec python3 $module "$@"
`;

/** The task: records the arguments it got, and reports one metric. */
const TRAIN = `import json, os, sys
with open(os.environ["FAKE_SCRIPT_RECORD"], "a") as record:
    record.write(json.dumps({"argv": sys.argv[1:]}) + "\\n")
with open(os.environ["LABSWEEP_RESULT_FILE"], "w") as result:
    json.dump({"loss": 0.5}, result)
`;

interface LaunchRecord {
  launcher: string;
  argv: string[];
  cuda_visible_devices: string | null;
}

function setUp(config: string): { dir: string; env: (gpus: FakeGpu[]) => NodeJS.ProcessEnv } {
  const dir = tempDir("labsweep-launcher-");
  const bin = join(dir, "bin");
  mkdirSync(bin);
  for (const name of ["accelerate", "torchrun"]) chmodSync(writeFile(bin, name, FAKE_LAUNCHER), 0o755);
  writeFile(dir, "train.py", TRAIN);
  mkdirSync(join(dir, "pkg"));
  writeFile(join(dir, "pkg"), "__init__.py", "");
  writeFile(join(dir, "pkg"), "train.py", TRAIN);
  writeFile(dir, "sweep.yaml", config);
  const env = (gpus: FakeGpu[]): NodeJS.ProcessEnv => {
    const base = fakeGpuEnv(gpus);
    return {
      ...base,
      PATH: `${bin}${delimiter}${base.PATH}`,
      FAKE_LAUNCH_RECORD: join(dir, "launches.jsonl"),
      FAKE_SCRIPT_RECORD: join(dir, "scripts.jsonl"),
    };
  };
  return { dir, env };
}

function readJsonLines<T>(path: string): T[] {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as T);
}

function expectCode(result: CliResult, code: number): void {
  expect(result.code, `labsweep exited ${result.code}:\n${result.stderr}\n${result.stdout}`).toBe(code);
}

const PORT = /^\d+$/;

describe("launchers end to end", () => {
  it("starts each task through accelerate or torchrun with one process per GPU", async () => {
    const { dir, env } = setUp(`command: python train.py --lr {lr} --name {name}
defaults: {name: "it's a test"}
resources: {gpus: 2}
acc:
  launcher: {name: accelerate, mixed_precision: bf16}
  output_dir: results/acc
  combinations:
    - lr: [0.1]
tr:
  launcher: torchrun
  output_dir: results/tr
  combinations:
    - lr: [0.2]
mod:
  launcher: {name: torchrun, master_port: auto}
  command: -m pkg.train --lr {lr}
  output_dir: results/mod
  combinations:
    - lr: [0.3]
`);
    const result = await runCli(["run", join(dir, "sweep.yaml")], {
      cwd: dir,
      env: env([{ memoryFreeMiB: 20_000 }, { memoryFreeMiB: 20_000 }]),
    });
    expectCode(result, 0);

    const launches = readJsonLines<LaunchRecord>(join(dir, "launches.jsonl"));
    expect(launches).toHaveLength(3);
    const byLauncher = (name: string, flag: string) =>
      launches.filter((launch) => launch.launcher === name && launch.argv.includes(flag));

    const [accelerate] = byLauncher("accelerate", "--multi_gpu");
    expect(accelerate?.cuda_visible_devices).toBe("0,1");
    const acceleratePort = accelerate?.argv[8] ?? "";
    expect(acceleratePort).toMatch(PORT);
    expect(accelerate?.argv).toEqual([
      "launch",
      "--num_processes",
      "2",
      "--gpu_ids",
      "all",
      "--mixed_precision",
      "bf16",
      "--main_process_port",
      acceleratePort,
      "--multi_gpu",
      "train.py",
      "--lr",
      "0.1",
      "--name",
      "it's a test",
    ]);

    // torchrun: one node, the rendezvous on 127.0.0.1 with a port of the task's own, never
    // --standalone (torch < 2.1 binds 29400 there, so two tasks on one machine collide).
    const torchruns = byLauncher("torchrun", "--master_port");
    expect(torchruns).toHaveLength(2);
    const ports = torchruns.map((launch) => launch.argv[9] ?? "");
    for (const port of ports) expect(Number(port)).toBeGreaterThan(0);
    const [script, module] = [
      torchruns.find((launch) => launch.argv.includes("train.py")),
      torchruns.find((launch) => launch.argv.includes("-m")),
    ];
    const head = (port: string) => [
      "--nnodes",
      "1",
      "--node_rank",
      "0",
      "--nproc_per_node",
      "2",
      "--master_addr",
      "127.0.0.1",
      "--master_port",
      port,
    ];
    expect(script?.cuda_visible_devices).toBe("0,1");
    expect(script?.argv).toEqual([
      ...head(script?.argv[9] ?? ""),
      "train.py",
      "--lr",
      "0.2",
      "--name",
      "it's a test",
    ]);
    expect(module?.argv).toEqual([...head(module?.argv[9] ?? ""), "-m", "pkg.train", "--lr", "0.3"]);
    expect(launches.some((launch) => launch.argv.includes("--standalone"))).toBe(false);

    // The scripts ran (through the fakes) with their arguments intact.
    const scripts = readJsonLines<{ argv: string[] }>(join(dir, "scripts.jsonl")).map((s) => s.argv);
    expect(scripts).toEqual(
      expect.arrayContaining([
        ["--lr", "0.1", "--name", "it's a test"],
        ["--lr", "0.2", "--name", "it's a test"],
        ["--lr", "0.3"],
      ]),
    );
    for (const phase of ["acc", "tr", "mod"])
      expect(readFileSync(join(dir, "results", phase, "final_results.csv"), "utf8")).toContain("0.5");
  });

  it("leaves the task's GPUs to CUDA_VISIBLE_DEVICES when they are not the first ones", async () => {
    // GPU 0 is busy with someone else's job, so the task gets GPUs 1 and 2; accelerate must not
    // be told "0,1" (it would set CUDA_VISIBLE_DEVICES=0,1 for its processes).
    const { dir, env } = setUp(`command: python train.py --lr {lr}
launcher: accelerate
resources: {gpus: 2}
exp:
  combinations:
    - lr: [0.1]
`);
    const result = await runCli(["run", join(dir, "sweep.yaml")], {
      cwd: dir,
      env: env([{ memoryFreeMiB: 1000 }, { memoryFreeMiB: 20_000 }, { memoryFreeMiB: 20_000 }]),
    });
    expectCode(result, 0);
    const [launch] = readJsonLines<LaunchRecord>(join(dir, "launches.jsonl"));
    expect(launch?.cuda_visible_devices).toBe("1,2");
    expect(launch?.argv.slice(0, 5)).toEqual(["launch", "--num_processes", "2", "--gpu_ids", "all"]);
  });
});
