/**
 * `--set [PHASE.]PARAM=VALUES`: the grammar (table-driven, hostile values included), where an
 * override goes in a sweep, and that a value from --set is the same task as that value in YAML.
 * Pure: configs are texts under fake paths, nothing is run but `sh` for the quoting check.
 */
import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { loadCommandGrid } from "../src/sweep/commandGrid.js";
import { ConfigError } from "../src/sweep/configError.js";
import { expandPhase } from "../src/sweep/expand.js";
import { loadSweep } from "../src/sweep/loadSweep.js";
import { parseOverride } from "../src/sweep/overrides.js";
import type { ParamValue, PhaseSpec } from "../src/sweep/types.js";

const FILE = "/sweeps/exp/sweep.yaml";

function load(text: string, overrides: string[]): PhaseSpec[] {
  return loadSweep([{ file: FILE, text }], { overrides }).phases;
}

const params = (phase: PhaseSpec) => [...expandPhase(phase)].map((task) => task.params);
const signatures = (phase: PhaseSpec) => [...expandPhase(phase)].map((task) => task.signature);

/** The ConfigError message a call throws (fails the test when it throws none or another error). */
function errorOf(call: () => unknown): string {
  try {
    call();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error("expected a ConfigError");
}

describe("the --set grammar", () => {
  const cases: Array<[string, string, ParamValue[]]> = [
    ["lr=0.1,0.01", "lr", [0.1, 0.01]],
    ["lr=1e-3", "lr", [0.001]],
    ["seed=range(5)", "seed", [0, 1, 2, 3, 4]],
    ["seed=range(2,5)", "seed", [2, 3, 4]],
    ["seed=range(10, 0, -3)", "seed", [10, 7, 4, 1]],
    ["seed=range(-2,1)", "seed", [-2, -1, 0]],
    ["flag=true,False,null", "flag", [true, false, null]],
    ["name=a,b", "name", ["a", "b"]],
    ['name="a,b"', "name", ["a,b"]],
    ["name='a,b','c'", "name", ["a,b", "c"]],
    ['name=""', "name", [""]],
    ["name= a , b ", "name", ["a", "b"]],
    ['name="range(3)"', "name", ["range(3)"]],
    ["layers=[64,64],[128]", "layers", [[64, 64], [128]]],
    ["opt={name: adam, lr: 1}", "opt", [{ name: "adam", lr: 1 }]],
    ["exp.lr=0.1", "exp.lr", [0.1]],
    ["model.hidden-size=8", "model.hidden-size", [8]],
    // Hostile values stay data: shell syntax, quotes, unicode, a value with = in it.
    ["cmd=$(touch pwned);rm -rf ~", "cmd", ["$(touch pwned);rm -rf ~"]],
    ["q=it's", "q", ["it's"]],
    ['q="say \\"hi\\""', "q", ['say "hi"']],
    ["q='`id` && echo $HOME | cat > x'", "q", ["`id` && echo $HOME | cat > x"]],
    ["u=é,日本語,🙂", "u", ["é", "日本語", "🙂"]],
    ["eq=a=b", "eq", ["a=b"]],
    ['tab="a\\tb"', "tab", ["a\tb"]],
  ];
  it.each(cases)("%s", (arg, target, values) => {
    const parsed = parseOverride(arg);
    expect(parsed.target).toBe(target);
    expect(parsed.values).toEqual(values);
  });

  it("keeps numbers and booleans as spelt, for templates", () => {
    expect(parseOverride("lr=1e-3,0.10,True,2").spellings).toEqual({
      "0.001": "1e-3",
      "0.1": "0.10",
      true: "True",
    });
  });

  const bad: Array<[string, RegExp]> = [
    ["lr", /--set lr: expected PARAM=VALUES or PHASE\.PARAM=VALUES/],
    ["=1", /no parameter name before the =/],
    ["lr=", /no values after the =/],
    ["lr=   ", /no values after the =/],
    ["lr=1,", /an empty value/],
    ["lr=,1", /an empty value/],
    ["lr=1,,2", /not valid YAML values: Unexpected ,/],
    ["seed=range(a)", /malformed range: write range\(N\), range\(A,B\) or range\(A,B,STEP\)/],
    ["seed=range(1.5)", /malformed range/],
    ["seed=range()", /malformed range/],
    ["seed=range(1,2,3,4)", /malformed range/],
    ["seed=range(5", /malformed range.*a range is the whole value/],
    ["seed=range(3),7", /malformed range/],
    ["seed=7,range(3)", /range\(…\) must be the whole value/],
    ["seed=range(5,5)", /range\(5,5\) is empty/],
    ["seed=range(0,5,-1)", /is empty/],
    ["seed=range(0,4,0)", /range step must not be zero/],
    ["seed=range(100000000)", /more than 10000000/],
    ["name=a: b", /": " makes a YAML key: value pair; quote the value/],
    ["name=*x", /an alias/],
    ["name=@x", /not valid YAML values: Plain value cannot start with reserved character @/],
    ["name=a #note", /a # after a space starts a YAML comment/],
    ["name=a\nb", /a line break/],
    ['name="a\\0b"', /NUL character/],
    ['name="unclosed', /not valid YAML values/],
  ];
  it.each(bad)("refuses %j", (arg, message) => {
    const text = errorOf(() => parseOverride(arg));
    expect(text).toMatch(message);
    expect(text.startsWith(`--set ${arg.replaceAll("\n", "\\n")}: `)).toBe(true);
  });
});

const SWEEP = `command: python train.py --lr {lr} --seed {seed}
seeds: [0, 1]
defaults: {lr: 0.1, wd: 0}
pre:
  combinations:
    - lr: [0.1, 0.2]
fine:
  after: [pre]
  combinations:
    - batch: [8]
eval:
  command: python eval.py
  defaults: {split: test}
`;

describe("where an override goes", () => {
  it("replaces an axis in place, keeping the order of tasks", () => {
    const [pre] = load(SWEEP, ["pre.lr=0.3,0.4,0.5"]);
    expect(pre?.axes.map((axis) => axis.name)).toEqual(["seed", "lr"]);
    expect(params(pre as PhaseSpec).map((p) => [p.seed, p.lr])).toEqual([
      [0, 0.3],
      [0, 0.4],
      [0, 0.5],
      [1, 0.3],
      [1, 0.4],
      [1, 0.5],
    ]);
  });

  it("turns a default into an axis and replaces the legacy seeds in every phase", () => {
    const phases = load(SWEEP, ["wd=0,0.1", "seed=range(3)"]);
    for (const phase of phases) {
      expect(phase.axes.find((axis) => axis.name === "seed")?.values).toEqual([0, 1, 2]);
      expect(phase.axes.find((axis) => axis.name === "wd")?.values).toEqual([0, 0.1]);
    }
    // eval's command uses neither, but it has wd (file defaults) and seed (seeds).
    expect(params(phases[2] as PhaseSpec)).toHaveLength(6);
  });

  it("reaches only the phases that have or use the parameter; seed reaches all", () => {
    const text = `a:
  command: python a.py --lr {lr}
  combinations:
    - lr: [0.1]
b:
  command: python b.py --seed {seed}
  combinations:
    - seed: [0]
c:
  command: python other.py {depth}
`;
    const [a, b, c] = load(text, ["lr=0.2,0.3", "depth=4,5"]);
    expect(params(a as PhaseSpec).map((p) => p.lr)).toEqual([0.2, 0.3]);
    expect(params(b as PhaseSpec)).toEqual([{ seed: 0 }]);
    // {depth} was given by nothing in the YAML: --set supplies it.
    expect(params(c as PhaseSpec)).toEqual([{ depth: 4 }, { depth: 5 }]);
    const seeded = load(text, ["seed=range(2)", "depth=1"]);
    expect(seeded.map((phase) => params(phase).map((p) => p.seed))).toEqual([
      [0, 1],
      [0, 1],
      [0, 1],
    ]);
  });

  it("PHASE.param wins over param in that phase, whatever the order", () => {
    const [pre, fine] = load(SWEEP, ["pre.lr=0.9", "lr=0.5"]);
    expect(new Set(params(pre as PhaseSpec).map((p) => p.lr))).toEqual(new Set([0.9]));
    expect(new Set(params(fine as PhaseSpec).map((p) => p.lr))).toEqual(new Set([0.5]));
  });

  it("picks the longest phase name for a dotted target, else reads it as a dotted parameter", () => {
    const text = `command: echo {lr} {model.lr}
defaults: {lr: 1, model.lr: 2}
a: {}
a.b: {}
`;
    const [a, ab] = load(text, ["a.b.lr=5", "model.lr=3"]);
    expect(params(a as PhaseSpec)).toEqual([{ lr: 1, "model.lr": 3 }]);
    expect(params(ab as PhaseSpec)).toEqual([{ lr: 5, "model.lr": 3 }]);
  });

  const refusals: Array<[string[], RegExp]> = [
    [["lrr=0.1"], /--set lrr=0\.1: no phase has a parameter "lrr" or uses \{lrr\} — did you mean "lr"\?/],
    [
      ["pree.lr=1"],
      /--set pree\.lr=1: no phase "pree" and no parameter "pree\.lr" — did you mean "pre"\? Phases: pre, fine, eval/,
    ],
    [["eval.batch=1"], /--set eval\.batch=1: phase "eval" has no parameter "batch" and uses no \{batch\}/],
    [["lr=1", "lr=2"], /--set lr=2: lr is also set by --set lr=1; give its values in one --set/],
    [["phase=a"], /"phase" is reserved/],
    [["pre.9x=1"], /"9x" is not a parameter name/],
  ];
  it.each(refusals)("refuses %j", (overrides, message) => {
    expect(errorOf(() => load(SWEEP, overrides))).toMatch(message);
  });

  it("checks the overridden grid as it would a YAML one (on_oom needs numbers)", () => {
    const text = `command: echo {batch}
on_oom: {param: batch}
a:
  combinations:
    - batch: [64]
`;
    expect(errorOf(() => load(text, ["batch=big"]))).toMatch(/on_oom/);
  });
});

describe("a value from --set is the same task as that value in YAML", () => {
  it("signs, renders and spells it alike", () => {
    const yaml = `command: python train.py --lr {lr} --seed {seed}
a:
  combinations:
    - lr: [1e-3, 0.10]
    - seed: [0, 1]
`;
    const fromYaml = load(yaml, [])[0] as PhaseSpec;
    const fromSet = load(
      `command: python train.py --lr {lr} --seed {seed}\na:\n  defaults: {lr: 5, seed: 9}\n`,
      ["lr=1e-3,0.10", "seed=range(2)"],
    )[0] as PhaseSpec;
    const quick = loadCommandGrid(
      "python train.py --lr {lr} --seed {seed}",
      ["lr=1e-3,0.10", "seed=0,1"],
      "/w",
    ).phases[0] as PhaseSpec;
    expect(signatures(fromSet)).toEqual(signatures(fromYaml));
    expect(signatures(quick)).toEqual(signatures(fromYaml));
    const commands = [...expandPhase(quick)].map((task) => task.command);
    expect(commands).toEqual([...expandPhase(fromYaml)].map((task) => task.command));
    expect(commands[0]).toBe("python train.py --lr 1e-3 --seed 0");
  });
});

describe("a quick grid (--command with no config)", () => {
  it("is one phase, grid, run in the dir with results in ./results", () => {
    const sweep = loadCommandGrid("python t.py {lr}", ["lr=1,2"], "/work/x");
    expect(sweep.phases.map((phase) => [phase.name, phase.baseDir])).toEqual([["grid", "/work/x"]]);
    expect([...expandPhase(sweep.phases[0] as PhaseSpec)].map((task) => task.placement.outputDir)).toEqual([
      "/work/x/results",
      "/work/x/results",
    ]);
  });

  it("passes a hostile value to its command as one argument, byte for byte", () => {
    const hostile = [
      "$(touch pwned)",
      "a b",
      "it's",
      '"quoted"',
      "`id`",
      "x;y|z&w",
      "-- --flag",
      "日本語 🙂",
      "back\\slash",
      "*",
      "~",
      "$HOME",
      "a,b",
    ];
    const flag = `v=${hostile.map((value) => JSON.stringify(value)).join(",")}`;
    for (const command of ["printf '%s\\n' {v}", "printf '%s\\n' \"{v}\"", "printf '%s\\n' '{v}'"]) {
      const tasks = [...expandPhase(loadCommandGrid(command, [flag], "/").phases[0] as PhaseSpec)];
      const printed = tasks.map((task) =>
        execFileSync("sh", ["-c", task.command], { encoding: "utf8", cwd: "/tmp" }),
      );
      expect(printed).toEqual(hostile.map((value) => `${value}\n`));
    }
  });

  const refusals: Array<[string, string[], RegExp]> = [
    [
      "python t.py --lr {lr} --seed {seed}",
      ["lr=1"],
      /^--command uses \{seed\}, but no --set gives it values: add --set seed=VALUES/,
    ],
    [
      "python t.py --lr {lr}",
      ["lrr=1"],
      /--command uses \{lr\}, but no --set gives it values \(is --set lrr=… meant for \{lr\}\?\)/,
    ],
    [
      "python t.py --lr {lr}",
      ["lr=1", "wd=2"],
      /^--set wd=2: --command uses no \{wd\}\. It uses: lr\. A --set may add a parameter only where a \{placeholder\} uses it/,
    ],
    ["python t.py --lr {lr}", ["other.lr=1", "lr=2"], /^--set other\.lr=1: --command uses no \{other\.lr\}/],
    ["python t.py {lr:.3f}", ["lr=1"], /format specs and conversions are not supported/],
    ["python t.py `{lr}`", ["lr=1"], /at character \d+ of --command/],
    ["python t.py --out {phase}", [], /\{phase\} works in output_dir only/],
  ];
  it.each(refusals)("refuses %s with %j", (command, overrides, message) => {
    expect(errorOf(() => loadCommandGrid(command, overrides, "/"))).toMatch(message);
  });

  it("lets seed go unused by the command (tasks see it in $LABSWEEP_PARAMS)", () => {
    const sweep = loadCommandGrid("python t.py", ["seed=range(3)"], "/");
    expect(params(sweep.phases[0] as PhaseSpec)).toEqual([{ seed: 0 }, { seed: 1 }, { seed: 2 }]);
  });
});
