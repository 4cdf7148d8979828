/**
 * `on_oom` in a config: accepted on a phase or at file level with its defaults, refused at
 * file:line when its parameter is missing or not numeric or its numbers are out of range; and
 * the scaling arithmetic (rounded down for integers, never below min, always shrinking).
 */
import { describe, expect, it } from "vitest";
import type { ConfigError } from "../src/sweep/configError.js";
import { parseSweepFile } from "../src/sweep/loadSweep.js";
import { MAX_OOM_RETRIES, nextOomValue, withOomValue } from "../src/sweep/oomScaling.js";
import type { OnOom } from "../src/sweep/types.js";
import { configErrorOf } from "./helpers/configErrors.js";

const FILE = "/sweeps/oom/sweep.yaml";

function errorOf(text: string): ConfigError {
  return configErrorOf(FILE, text);
}

describe("on_oom in a config", () => {
  it("is taken from the phase, with factor 0.5 and min 1 by default, and carries the command template", () => {
    const sweep = parseSweepFile(
      FILE,
      [
        "command: python3 train.py --bs {batch_size} --lr {lr}",
        "train:",
        "  on_oom: {param: batch_size}",
        "  combinations:",
        "    - batch_size: [64, 128]",
        "    - lr: [0.0, 1e-3]",
        "",
      ].join("\n"),
    );
    expect(sweep.phases[0]?.policy.onOom).toEqual({
      param: "batch_size",
      factor: 0.5,
      min: 1,
      commandTemplate: "python3 train.py --bs {batch_size} --lr {lr}",
      writtenAs: { lr: { "0": "0.0", "0.001": "1e-3" } },
    });
  });

  it("comes from the file level, a phase's own replacing it; phases without one have none", () => {
    const sweep = parseSweepFile(
      FILE,
      [
        "command: python3 train.py {batch_size}",
        "on_oom: {param: batch_size, factor: 0.25, min: 8}",
        "defaults: {batch_size: 256}",
        "a:",
        "  combinations:",
        "    - seed: [1]",
        "b:",
        "  on_oom: {param: batch_size, factor: 0.75, min: 2}",
        "",
      ].join("\n"),
    );
    expect(sweep.phases.map((phase) => phase.policy.onOom?.factor)).toEqual([0.25, 0.75]);
    expect(sweep.phases.map((phase) => phase.policy.onOom?.min)).toEqual([8, 2]);
    const plain = parseSweepFile(FILE, "command: run {x}\np:\n  combinations:\n    - x: [1]\n");
    expect(plain.phases[0]?.policy).not.toHaveProperty("onOom");
  });

  const cases: Array<{ name: string; yaml: string; line: number; says: string[] }> = [
    {
      name: "a parameter the phase lacks, with a guess",
      yaml: "command: run {batch_size}\np:\n  on_oom: {param: batchsize}\n  combinations:\n    - batch_size: [8]\n",
      line: 3,
      says: [
        'phase "p" has no parameter "batchsize"',
        'did you mean "batch_size"?',
        "Parameters: batch_size",
      ],
    },
    {
      name: "a file-level parameter one phase lacks",
      yaml: "command: run {x}\non_oom: {param: batch_size}\np:\n  combinations:\n    - x: [8]\n",
      line: 2,
      says: ['phase "p" has no parameter "batch_size" (the file-level on_oom'],
    },
    {
      name: "a parameter with a value that is not a number",
      yaml: "command: run {bs}\np:\n  on_oom: {param: bs}\n  combinations:\n    - bs: [8, big]\n",
      line: 3,
      says: ['parameter "bs" of phase "p" must have numeric values', 'the string "big"'],
    },
    {
      name: "a factor of 1 or more",
      yaml: "command: run {bs}\np:\n  on_oom: {param: bs, factor: 1}\n  combinations:\n    - bs: [8]\n",
      line: 3,
      says: ["factor"],
    },
    {
      name: "a factor of 0",
      yaml: "command: run {bs}\np:\n  on_oom: {param: bs, factor: 0}\n  combinations:\n    - bs: [8]\n",
      line: 3,
      says: ["factor"],
    },
    {
      name: "a negative min",
      yaml: "command: run {bs}\np:\n  on_oom: {param: bs, min: -1}\n  combinations:\n    - bs: [8]\n",
      line: 3,
      says: ["min"],
    },
    {
      name: "an unknown key, listing the allowed ones",
      yaml: "command: run {bs}\np:\n  on_oom: {param: bs, minimum: 2}\n  combinations:\n    - bs: [8]\n",
      line: 3,
      says: [
        'unknown key "minimum"',
        "param (default: required",
        "factor (default: 0.5)",
        "min (default: 1)",
      ],
    },
    {
      name: "no param",
      yaml: "command: run {bs}\np:\n  on_oom: {factor: 0.5}\n  combinations:\n    - bs: [8]\n",
      line: 3,
      says: ["param"],
    },
  ];
  for (const { name, yaml, line, says } of cases) {
    it(`refuses ${name}, naming file:line`, () => {
      const error = errorOf(yaml);
      expect(error.message.startsWith(`${FILE}:${line}:`), error.message).toBe(true);
      for (const text of says) expect(error.message).toContain(text);
      expect(error.message).not.toContain("\n");
    });
  }
});

describe("on_oom scaling", () => {
  const policy = (factor: number, min: number): OnOom => ({
    param: "bs",
    factor,
    min,
    commandTemplate: "python3 train.py --bs {bs} --name {name}",
  });

  it("halves an integer, rounding down, until min", () => {
    const steps: number[] = [];
    let value: number | null = 100;
    for (let retries = 0; value !== null; retries++) {
      steps.push(value);
      value = nextOomValue(policy(0.5, 1), 100, value, retries);
    }
    expect(steps).toEqual([100, 50, 25, 12, 6, 3, 1]);
  });

  it("never goes below min, and stops there", () => {
    expect(nextOomValue(policy(0.5, 40), 64, 64, 0)).toBe(40);
    expect(nextOomValue(policy(0.5, 40), 64, 40, 1)).toBeNull();
    expect(nextOomValue(policy(0.5, 1.5), 3, 3, 0)).toBe(2); // an integer's min rounds up
    expect(nextOomValue(policy(0.9, 1), 2, 2, 0)).toBe(1); // floor: always shrinks
  });

  it("keeps fractions for a fractional value, and gives up after MAX_OOM_RETRIES", () => {
    expect(nextOomValue(policy(0.5, 0), 0.5, 0.5, 0)).toBe(0.25);
    expect(nextOomValue(policy(0.5, 0), 0.5, 0.25, MAX_OOM_RETRIES)).toBeNull();
  });

  it("renders the command and parameters with the scaled value, quoting the rest as before", () => {
    const scaled = withOomValue(policy(0.5, 1), { bs: 64, name: "it's" }, 16);
    expect(scaled.params).toEqual({ bs: 16, name: "it's" });
    expect(scaled.command).toBe("python3 train.py --bs 16 --name 'it'\\''s'");
  });
});
