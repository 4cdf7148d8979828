/** `launcher:` in configs: the forms it takes, how phases inherit it, its errors, and identity. */
import { describe, expect, it } from "vitest";
import type { ConfigError } from "../src/sweep/configError.js";
import { expandPhase } from "../src/sweep/expand.js";
import { parseSweepFile } from "../src/sweep/loadSweep.js";
import type { LauncherSpec, PhaseSpec, TorchrunLauncher } from "../src/sweep/types.js";
import { configErrorOf } from "./helpers/configErrors.js";

const FILE = "/sweeps/exp/sweep.yaml";

function phases(text: string): PhaseSpec[] {
  return parseSweepFile(FILE, text).phases;
}

function launcherOf(text: string, phase = "exp"): LauncherSpec | null {
  const found = phases(text).find((p) => p.name === phase);
  if (!found) throw new Error(`no phase ${phase}`);
  return found.policy.launcher;
}

function errorOf(text: string): ConfigError {
  return configErrorOf(FILE, text);
}

/** Checks the error's line (and column), key path and texts; errors are one line. */
function expectError(
  text: string,
  expected: { line: number; column?: number; keyPath: string; says: string[] },
): void {
  const error = errorOf(text);
  expect(error.place?.line, error.message).toBe(expected.line);
  if (expected.column !== undefined) expect(error.place?.column, error.message).toBe(expected.column);
  expect(error.keyPath, error.message).toBe(expected.keyPath);
  expect(error.message.startsWith(`${FILE}:${expected.line}:`)).toBe(true);
  for (const says of expected.says) expect(error.message).toContain(says);
  expect(error.message).not.toContain("\n");
}

const TRAIN = "command: python train.py --lr {lr}\nexp:\n  combinations:\n    - lr: [0.1, 0.01]\n";

const ACCELERATE_DEFAULTS: LauncherSpec = {
  name: "accelerate",
  mixedPrecision: null,
  mainProcessPort: "auto",
  extraArgs: [],
};
const TORCHRUN_DEFAULTS: TorchrunLauncher = { name: "torchrun", masterPort: "auto", extraArgs: [] };

describe("launcher forms", () => {
  it("is none without a launcher key", () => {
    expect(launcherOf(TRAIN)).toBeNull();
  });

  it.each<[string, string, LauncherSpec | null]>([
    ["none", "launcher: none", null],
    ["accelerate", "launcher: accelerate", ACCELERATE_DEFAULTS],
    ["torchrun", "launcher: torchrun", TORCHRUN_DEFAULTS],
    ["accelerate mapping, defaults", "launcher: {name: accelerate}", ACCELERATE_DEFAULTS],
    [
      "accelerate mapping, every key",
      "launcher:\n  name: accelerate\n  mixed_precision: bf16\n  main_process_port: 29600\n  extra_args: [--num_cpu_threads_per_process, 4]",
      {
        name: "accelerate",
        mixedPrecision: "bf16",
        mainProcessPort: 29600,
        extraArgs: ["--num_cpu_threads_per_process", "4"],
      },
    ],
    [
      "accelerate mixed_precision no (a string in YAML 1.2)",
      "launcher: {name: accelerate, mixed_precision: no}",
      { ...ACCELERATE_DEFAULTS, mixedPrecision: "no" },
    ],
    [
      "torchrun mapping, auto port",
      "launcher: {name: torchrun, master_port: auto, extra_args: [--max_restarts, 0]}",
      { name: "torchrun", masterPort: "auto", extraArgs: ["--max_restarts", "0"] },
    ],
    [
      "torchrun mapping, fixed port",
      "launcher: {name: torchrun, master_port: 29700}",
      { ...TORCHRUN_DEFAULTS, masterPort: 29700 },
    ],
  ])("%s", (_name, line, expected) => {
    expect(launcherOf(`${line}\n${TRAIN}`)).toEqual(expected);
  });

  it("is inherited from the file level; a phase's launcher replaces it as a whole", () => {
    const text = [
      "launcher: {name: accelerate, mixed_precision: bf16}",
      "command: python train.py --lr {lr}",
      "inherits:",
      "  defaults: {lr: 0.1}",
      "overrides:",
      "  defaults: {lr: 0.2}",
      "  launcher: {name: accelerate, main_process_port: 29600}",
      "switches:",
      "  defaults: {lr: 0.3}",
      "  launcher: torchrun",
      "plain:",
      "  defaults: {lr: 0.4}",
      "  launcher: none",
      "  command: cd sub && make lr={lr}",
      "",
    ].join("\n");
    expect(launcherOf(text, "inherits")).toEqual({ ...ACCELERATE_DEFAULTS, mixedPrecision: "bf16" });
    expect(launcherOf(text, "overrides")).toEqual({ ...ACCELERATE_DEFAULTS, mainProcessPort: 29600 });
    expect(launcherOf(text, "switches")).toEqual(TORCHRUN_DEFAULTS);
    expect(launcherOf(text, "plain")).toBeNull();
    // `launcher` is a setting, never a phase.
    expect(phases(text).map((p) => p.name)).toEqual(["inherits", "overrides", "switches", "plain"]);
  });

  it.each([
    ["a script", "train.py --lr {lr}"],
    ["python and a script", "python train.py --lr {lr}"],
    ["python3 and a script in a subdirectory", "python3 scripts/train.py --lr {lr}"],
    ["a module", "-m pkg.train --lr {lr}"],
    ["python -m and a module", "python -m pkg.train --lr {lr}"],
    ["a script and more shell after it", "train.py --lr {lr} && echo done"],
  ])("accepts a command that starts with %s", (_name, command) => {
    const text = `launcher: torchrun\ncommand: ${command}\nexp:\n  combinations:\n    - lr: [0.1]\n`;
    expect(launcherOf(text)).toEqual(TORCHRUN_DEFAULTS);
  });
});

describe("launcher errors", () => {
  it("a typo at file level suggests the launcher", () => {
    expectError(`launcher: acelerate\n${TRAIN}`, {
      line: 1,
      column: 11,
      keyPath: "launcher",
      says: ["expected none, accelerate or torchrun", 'got "acelerate" — did you mean "accelerate"?'],
    });
  });

  it("a typo in a phase suggests the launcher", () => {
    expectError(`${TRAIN}  launcher: torchrn\n`, {
      line: 5,
      keyPath: "exp.launcher",
      says: ['got "torchrn" — did you mean "torchrun"?'],
    });
  });

  it("a misspelt launcher key suggests it, in a phase and at the top", () => {
    expectError(`${TRAIN}  launchr: accelerate\n`, {
      line: 5,
      column: 3,
      keyPath: "exp.launchr",
      says: [
        'unknown key "launchr" — did you mean "launcher"?',
        "launcher (default: the file-level launcher, else none)",
      ],
    });
    expectError(`launchr: accelerate\n${TRAIN}`, {
      line: 1,
      column: 1,
      keyPath: "launchr",
      says: ['unknown setting "launchr" — did you mean "launcher"?'],
    });
  });

  it("an unknown key in the mapping form suggests the right one and lists the keys", () => {
    const text = `launcher:\n  name: accelerate\n  mixed_precison: bf16\n${TRAIN}`;
    expectError(text, {
      line: 3,
      column: 3,
      keyPath: "launcher.mixed_precison",
      says: [
        'unknown key "mixed_precison" for accelerate — did you mean "mixed_precision"?',
        "Allowed keys: name (default: required: accelerate), mixed_precision (default: accelerate's config, else no), main_process_port (default: auto), extra_args (default: [])",
      ],
    });
  });

  it("the other launcher's port key is named as such", () => {
    expectError(`launcher: {name: accelerate, master_port: 29600}\n${TRAIN}`, {
      line: 1,
      keyPath: "launcher.master_port",
      says: ['unknown key "master_port" for accelerate — that is a torchrun key'],
    });
  });

  it("the mapping form needs a known name", () => {
    expectError(`launcher: {mixed_precision: bf16}\n${TRAIN}`, {
      line: 1,
      keyPath: "launcher",
      says: ["the mapping form needs `name: accelerate` or `name: torchrun`"],
    });
    expectError(`launcher: {name: acclerate}\n${TRAIN}`, {
      line: 1,
      keyPath: "launcher.name",
      says: ['expected accelerate or torchrun; got the string "acclerate" — did you mean "accelerate"?'],
    });
  });

  it.each([
    [
      "mixed_precision",
      "{name: accelerate, mixed_precision: bfloat16}",
      "expected one of no, fp16, bf16, fp8",
    ],
    [
      "main_process_port",
      "{name: accelerate, main_process_port: 0}",
      "expected auto or a port number 1–65535",
    ],
    ["master_port", "{name: torchrun, master_port: random}", "expected auto or a port number 1–65535"],
    ["extra_args", "{name: torchrun, extra_args: --max-restarts}", "expected a list of arguments"],
  ])("a bad %s value is named", (key, value, says) => {
    expectError(`launcher: ${value}\n${TRAIN}`, { line: 1, keyPath: `launcher.${key}`, says: [says] });
  });

  it("a non-string launcher value is described", () => {
    expectError(`launcher: 2\n${TRAIN}`, { line: 1, keyPath: "launcher", says: ["got number 2"] });
  });

  it.each([
    ["--num_processes=4", "accelerate", "labsweep sets it from the GPUs a task gets"],
    ["--mixed-precision", "accelerate", "use the mixed_precision key"],
    ["--nproc-per-node", "torchrun", "labsweep sets it from the GPUs a task gets"],
    ["--standalone", "torchrun", "labsweep pins the rendezvous to 127.0.0.1 with a port per task instead"],
    ["--master-addr=0.0.0.0", "torchrun", "labsweep pins the rendezvous to 127.0.0.1"],
    ["--nnodes", "torchrun", "labsweep runs each task on one node"],
    ["--rdzv_endpoint", "torchrun", "labsweep pins the rendezvous to 127.0.0.1 with a port per task"],
  ])("extra_args may not set %s (%s), which labsweep manages", (flag, name, advice) => {
    expectError(`launcher: {name: ${name}, extra_args: [--foo, "${flag}"]}\n${TRAIN}`, {
      line: 1,
      keyPath: "launcher.extra_args[1]",
      says: [`${flag.split("=")[0]} cannot be an extra argument: ${advice}`],
    });
  });

  it.each([
    ["a cd first", "cd src && python train.py --lr {lr}", '"cd" is neither a .py script nor -m module'],
    ["python options", "python -u train.py --lr {lr}", "python options such as -u cannot pass through"],
    ["another interpreter", "python3.11 train.py --lr {lr}", 'drop "python3.11"'],
    ["a placeholder script", "python {script} --lr {lr}", "the script must be written out"],
    ["a script without .py", "./train --lr {lr}", '"./train" is neither a .py script nor -m module'],
  ])("a command with %s cannot run under a launcher", (_name, command, says) => {
    const defaults = "  defaults: {script: train.py}\n";
    expectError(
      `command: ${command}\nexp:\n${defaults}  launcher: accelerate\n  combinations:\n    - lr: [0.1]\n`,
      {
        line: 1,
        keyPath: "command",
        says: ["with launcher accelerate the command must start with a Python script or module", says],
      },
    );
  });

  it("says when the launcher comes from the file level", () => {
    expectError("launcher: torchrun\nexp:\n  command: bash run.sh\n", {
      line: 3,
      keyPath: "exp.command",
      says: ["with launcher torchrun (the file-level launcher) the command must start"],
    });
  });
});

describe("launcher and task identity", () => {
  it("leaves task signatures unchanged: the launcher is run policy, like retries", () => {
    const signatures = (text: string) =>
      [...expandPhase(phases(text)[0] as PhaseSpec)].map((t) => t.signature);
    const plain = signatures(TRAIN);
    expect(plain).toHaveLength(2);
    expect(signatures(`launcher: accelerate\n${TRAIN}`)).toEqual(plain);
    expect(signatures(`launcher: {name: torchrun, master_port: auto}\n${TRAIN}`)).toEqual(plain);
    expect(signatures(`launcher: {name: accelerate, mixed_precision: bf16}\n${TRAIN}`)).toEqual(plain);
  });

  it("keeps the rendered command as written; the launcher is applied only when the task starts", () => {
    const [task] = [...expandPhase(phases(`launcher: accelerate\n${TRAIN}`)[0] as PhaseSpec)];
    expect(task?.command).toBe("python train.py --lr 0.1");
    expect(task?.policy.launcher).toEqual(ACCELERATE_DEFAULTS);
  });
});
