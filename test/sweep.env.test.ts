/**
 * `env:` in a config: the file-level map with a phase's keys over it, refused at file:line for a
 * bad name, a LABSWEEP_ name or an unknown placeholder; rendered per task with `{param}`,
 * `{task_id}`, `{signature}`, `{group}` and `{phase}`; never part of a task's signature.
 */
import { describe, expect, it } from "vitest";
import { taskSignature } from "../src/sweep/canonical.js";
import { renderEnv, taskGroup } from "../src/sweep/envSetting.js";
import { expandPhase } from "../src/sweep/expand.js";
import { parseSweepFile } from "../src/sweep/loadSweep.js";
import type { PhaseSpec } from "../src/sweep/types.js";
import { configErrorOf } from "./helpers/configErrors.js";

const FILE = "/sweeps/env/sweep.yaml";
const GRID = [
  "command: python3 train.py --lr {lr} --seed {seed}",
  "train:",
  "  combinations:",
  "    - lr: [1e-3, 0.01]",
  "    - seed: [1, 2]",
];

function phaseOf(lines: string[]): PhaseSpec {
  return parseSweepFile(FILE, `${lines.join("\n")}\n`).phases[0] as PhaseSpec;
}

/** Each task of the phase's grid with its env rendered (task ids counted from 1). */
function rendered(phase: PhaseSpec): Array<{ signature: string; env: Record<string, string> }> {
  const setting = phase.policy.env;
  if (!setting) throw new Error("the phase has no env");
  return [...expandPhase(phase)].map((task, index) => ({
    signature: task.signature,
    env: renderEnv(setting, {
      taskId: index + 1,
      signature: task.signature,
      params: task.params,
      phase: "train",
    }),
  }));
}

describe("env in a config", () => {
  it("renders parameters, as spelt in the config, and the built-ins per task", () => {
    const phase = phaseOf([
      ...GRID,
      "  env:",
      '    WANDB_RUN_ID: "{signature}"',
      '    WANDB_RUN_GROUP: "{group}"',
      "    WANDB_RESUME: allow",
      '    RUN_NAME: "{phase}-lr{lr}-s{seed}-t{task_id}"',
      "    DEBUG: true",
      "    WORKERS: 4",
    ]);
    const tasks = rendered(phase);
    expect(tasks[0]?.env).toEqual({
      WANDB_RUN_ID: tasks[0]?.signature,
      WANDB_RUN_GROUP: taskGroup({ lr: 0.001 }, "python3 train.py --lr {lr} --seed {seed}"),
      WANDB_RESUME: "allow",
      RUN_NAME: "train-lr1e-3-s1-t1",
      DEBUG: "true",
      WORKERS: "4",
    });
    for (const task of tasks) expect(task.env.WANDB_RUN_ID).toBe(task.signature);
  });

  it("groups the seeds of one configuration and parts the others", () => {
    const [a1, a2, b1, b2] = rendered(phaseOf([...GRID, "  env:", '    G: "{group}"'])).map(
      (task) => task.env.G,
    );
    expect(a1).toBe(a2);
    expect(b1).toBe(b2);
    expect(a1).not.toBe(b1);
    // The signature's canonical rule: a task without a seed has its own signature as its group.
    expect(taskGroup({ lr: "1e-3", seed: 7 }, "c {lr}")).toBe(taskSignature({ lr: 0.001 }, "c {lr}"));
  });

  it("is not part of a task's identity: adding or changing it keeps every signature", () => {
    const bare = [...expandPhase(phaseOf(GRID))].map((task) => task.signature);
    const withEnv = [...expandPhase(phaseOf([...GRID, "  env: {A: x, B: '{group}'}"]))].map(
      (task) => task.signature,
    );
    const changed = [...expandPhase(phaseOf([...GRID, "  env: {A: y}"]))].map((task) => task.signature);
    expect(withEnv).toEqual(bare);
    expect(changed).toEqual(bare);
  });

  it("comes from the file level, a phase's map overriding and extending it key by key", () => {
    const sweep = parseSweepFile(
      FILE,
      [
        "command: run {x}",
        "env: {A: file, B: file}",
        "p:",
        "  env: {B: phase, C: '{x}'}",
        "  combinations:",
        "    - x: [1]",
        "q:",
        "  defaults: {x: 2}",
        "",
      ].join("\n"),
    );
    expect(sweep.phases.map((phase) => phase.policy.env?.vars)).toEqual([
      { A: "file", B: "phase", C: "{x}" },
      { A: "file", B: "file" },
    ]);
    const plain = parseSweepFile(FILE, "command: run {x}\np:\n  defaults: {x: 1}\n");
    expect(plain.phases[0]?.policy).not.toHaveProperty("env");
  });

  it("keeps a hostile parameter value as plain text: no shell ever reads it", () => {
    const phase = phaseOf([
      "command: run {name}",
      "p:",
      "  combinations:",
      `    - name: ["'; touch /tmp/pwned; echo \\"$HOME\\" \`id\` $(id)"]`,
      `  env: {RUN_NAME: 'run {name} \${HOME}'}`,
    ]);
    expect(rendered(phase)[0]?.env.RUN_NAME).toBe(
      `run '; touch /tmp/pwned; echo "$HOME" \`id\` $(id) \${HOME}`,
    );
  });
});

describe("env errors", () => {
  const cases: Array<{ name: string; yaml: string; line: number; says: string[] }> = [
    {
      name: "a name that is no environment variable name",
      yaml: "command: run {x}\np:\n  defaults: {x: 1}\n  env:\n    1BAD-NAME: x\n",
      line: 5,
      says: ['"1BAD-NAME" is not an environment variable name'],
    },
    {
      name: "a LABSWEEP_ name",
      yaml: "command: run {x}\nenv:\n  LABSWEEP_TASK_ID: x\np:\n  defaults: {x: 1}\n",
      line: 3,
      says: ["LABSWEEP_", "labsweep's own"],
    },
    {
      name: "CUDA_VISIBLE_DEVICES, which labsweep sets",
      yaml: "command: run {x}\np:\n  defaults: {x: 1}\n  env: {CUDA_VISIBLE_DEVICES: '0'}\n",
      line: 4,
      says: ["CUDA_VISIBLE_DEVICES", "GPUs"],
    },
    {
      name: "an unknown placeholder, with a did-you-mean",
      yaml: "command: run {x}\np:\n  defaults: {x: 1}\n  env:\n    A: ok\n    WANDB_RUN_GROUP: '{grup}'\n",
      line: 6,
      says: ["WANDB_RUN_GROUP", "{grup}", 'did you mean "group"?'],
    },
    {
      name: "a file-level placeholder a phase lacks",
      yaml: "command: run {x}\nenv: {RUN: '{lr}'}\np:\n  defaults: {x: 1}\n",
      line: 2,
      says: ["RUN", "{lr}", 'phase "p"'],
    },
    {
      name: "a list value",
      yaml: "command: run {x}\np:\n  defaults: {x: 1}\n  env: {A: [1, 2]}\n",
      line: 4,
      says: ["expected a string, number or boolean", "a list of 2"],
    },
  ];
  for (const { name, yaml, line, says } of cases) {
    it(`refuses ${name}, naming file:line`, () => {
      const error = configErrorOf(FILE, yaml);
      expect(error.message.startsWith(`${FILE}:${line}:`), error.message).toBe(true);
      for (const text of says) expect(error.message).toContain(text);
    });
  }
});
