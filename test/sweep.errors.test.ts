import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../src/sweep/configError.js";
import { type LoadOptions, loadSweep, parseSweepFile } from "../src/sweep/loadSweep.js";

const FILE = "/sweeps/exp/sweep.yaml";

function errorOf(run: () => unknown): ConfigError {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error("expected a ConfigError, but the config was accepted");
}

interface Expected {
  line: number;
  column?: number;
  keyPath?: string;
  /** Texts the message must contain. */
  says?: string[];
  file?: string;
}

/** Checks the error's place (the message starts with file:line:column:), key path and text. */
function expectPlace(error: ConfigError, expected: Expected): void {
  const file = expected.file ?? FILE;
  const prefix = `${file}:${expected.line}:${expected.column ?? ""}`;
  expect(error.message.startsWith(prefix), `${error.message}\n  should start with ${prefix}`).toBe(true);
  expect(error.message).toMatch(/^[^:]+:\d+:\d+: /);
  expect(error.place?.line).toBe(expected.line);
  if (expected.column !== undefined) expect(error.place?.column).toBe(expected.column);
  if (expected.keyPath !== undefined) {
    expect(error.keyPath).toBe(expected.keyPath);
    if (expected.keyPath) expect(error.message).toContain(`: ${expected.keyPath}: `);
  }
  for (const text of expected.says ?? []) expect(error.message).toContain(text);
  expect(error.message, "error messages are one line").not.toContain("\n");
}

function expectError(text: string, expected: Expected, options?: LoadOptions): ConfigError {
  const error = errorOf(() => parseSweepFile(FILE, text, options));
  expectPlace(error, expected);
  return error;
}

const PHASE_KEYS_LISTED =
  "Allowed keys: defaults (default: {}), combinations (default: one task from defaults), output_dir (default: results/{phase}), command";

describe("unknown keys: did you mean, and the allowed keys", () => {
  it.each([
    ["comand", "command", "exp:\n  comand: python train.py\n"],
    ["combinatons", "combinations", "command: run\nexp:\n  combinatons:\n    - lr: [1]\n"],
    ["output_dri", "output_dir", "command: run\nexp:\n  output_dri: out\n"],
    ["retires", "retries", "command: run\nexp:\n  retires: 3\n"],
  ])("%s in a phase suggests %s", (typo, meant, text) => {
    const line = text.split("\n").findIndex((l) => l.includes(`${typo}:`)) + 1;
    expectError(text, {
      line,
      column: 3,
      keyPath: `exp.${typo}`,
      says: [`unknown key "${typo}" — did you mean "${meant}"?`, PHASE_KEYS_LISTED],
    });
  });

  it("gpu_memroy_gb inside resources suggests gpu_memory_gb and lists the resource keys", () => {
    expectError("command: run\nexp:\n  resources:\n    gpus: 1\n    gpu_memroy_gb: 20\n", {
      line: 5,
      column: 5,
      keyPath: "exp.resources.gpu_memroy_gb",
      says: [
        'unknown key "gpu_memroy_gb" — did you mean "gpu_memory_gb"?',
        "Allowed keys: gpus (default: 1 on GPU machines, else 0), gpu_memory_gb (default: 0), cpus (default: 1)",
      ],
    });
  });

  it("a parameter written straight into a phase says where parameters go", () => {
    expectError("command: run\nexp:\n  combinations:\n    - a: [1]\n  lr: [0.1, 0.2]\n", {
      line: 5,
      keyPath: "exp.lr",
      says: ['unknown key "lr"', "parameters go under `defaults:` or `combinations:`", PHASE_KEYS_LISTED],
    });
  });

  it("seeds inside a phase points to seed in combinations", () => {
    expectError("command: run\nexp:\n  seeds: [1, 2]\n", {
      line: 3,
      keyPath: "exp.seeds",
      says: ["`seeds` is a file-level setting", "- seed: [...]"],
    });
  });

  it("a scalar top-level key that looks like a misspelt setting is reported as one", () => {
    expectError("command: run\nretires: 3\nexp:\n  combinations:\n    - a: [1]\n", {
      line: 2,
      column: 1,
      keyPath: "retires",
      says: [
        'unknown setting "retires" — did you mean "retries"?',
        "Settings: defaults, seeds, output_dir, command, retries, max_lost, max_failures, timeout, backoff, resources",
      ],
    });
    expectError("comand: run {a}\nexp:\n  combinations:\n    - a: [1]\n", {
      line: 1,
      keyPath: "comand",
      says: ['did you mean "command"?'],
    });
    expectError("command: run\nseed: [1, 2]\nexp: {}\n", { line: 2, keyPath: "seed", says: ['"seeds"'] });
  });

  it("a misspelt mapping setting read as a phase says so", () => {
    expectError("command: run\ndefualts: {}\nexp: {}\n", {
      line: 2,
      keyPath: "defualts",
      says: ['unknown setting "defualts" — did you mean "defaults"?'],
    });
    expectError("command: run\ndefualts:\n  lr: 1\nexp: {}\n", {
      line: 3,
      keyPath: "defualts.lr",
      says: ['is the phase name "defualts" a misspelt setting? did you mean "defaults"?'],
    });
  });
});

describe("placeholders", () => {
  it("an undefined placeholder in the command names it, suggests the closest and lists the defined ones", () => {
    expectError(
      "command: python train.py --lr {lr} --seed {sed}\nexp:\n  combinations:\n    - lr: [1]\n    - seed: [1]\n",
      {
        line: 1,
        column: 10,
        keyPath: "command",
        says: [
          'undefined placeholder {sed} in command of phase "exp" — did you mean "seed"?',
          "Defined: lr, seed",
        ],
      },
    );
  });

  it("an undefined placeholder in a phase's command points at that command", () => {
    expectError("exp:\n  defaults: {lr: 1}\n  command: run {lrr}\n", {
      line: 3,
      column: 12,
      keyPath: "exp.command",
      says: ['undefined placeholder {lrr} in command of phase "exp" — did you mean "lr"?'],
    });
  });

  it("an undefined placeholder in output_dir suggests the closest, {phase} included", () => {
    expectError("command: run\nexp:\n  combinations:\n    - width: [1]\n  output_dir: results/{widht}\n", {
      line: 5,
      column: 15,
      keyPath: "exp.output_dir",
      says: [
        'undefined placeholder {widht} in output_dir of phase "exp" — did you mean "width"?',
        "Defined: phase, width",
      ],
    });
    expectError("command: run\noutput_dir: r/{phse}\nexp: {}\n", {
      line: 2,
      keyPath: "output_dir",
      says: ['did you mean "phase"?'],
    });
  });

  it("without a close name, says how to write literal braces", () => {
    expectError("command: awk {zzz}\nexp: {defaults: {a: 1}}\n", {
      line: 1,
      says: ["undefined placeholder {zzz} in command", "Defined: a; write {{ and }} for literal braces"],
    });
  });

  it("{phase} in a command is explained: a shared task has one command", () => {
    expectError("command: run --tag {phase}\nexp: {}\n", {
      line: 1,
      says: ["{phase} works in output_dir only"],
    });
  });

  it("a Python format spec is rejected instead of being left as text", () => {
    expectError("command: run --lr {lr:.3f}\nexp:\n  combinations:\n    - lr: [0.1]\n", {
      line: 1,
      keyPath: "command",
      says: ["{lr:.3f}: format specs and conversions are not supported; write {lr}"],
    });
  });

  it("a quote the command leaves open is caught before any shell sees it", () => {
    expectError("exp:\n  command: echo 'it is {x}\n  defaults: {x: 1}\n", {
      line: 2,
      keyPath: "exp.command",
      says: ["leaves a ' quote open (at character 6)"],
    });
  });
});

describe("malformed YAML", () => {
  it("a tab used for indentation", () => {
    expectError("command: run\nexp:\n\tcombinations: []\n", { line: 3, says: ["invalid YAML: Tabs"] });
  });

  it("bad indentation", () => {
    expectError("command: run\nexp:\n  combinations:\n    - a: [1]\n   output_dir: x\n", {
      line: 5,
      says: ["invalid YAML"],
    });
  });

  it("an unclosed bracket points at the bracket, not where the parser gave up", () => {
    expectError("command: run\nexp:\n  combinations:\n    - a: [1, 2\n  output_dir: out\n", {
      line: 4,
      column: 10,
      says: ["invalid YAML: this [ is never closed with ]", "gave up at line 5"],
    });
    expectError("command: run\nexp: {output_dir: out\nother: {}\n", {
      line: 2,
      column: 6,
      says: ["this { is never closed with }"],
    });
  });

  it("an unclosed quote points at the quote", () => {
    expectError('command: "run {a}\nexp: {}\n', {
      line: 1,
      column: 10,
      says: ['this " quote is never closed'],
    });
  });

  it("a duplicate key names the key path and the first occurrence", () => {
    expectError("command: run\nexp:\n  output_dir: a\n  combinations:\n    - x: [1]\n  output_dir: b\n", {
      line: 6,
      column: 3,
      keyPath: "exp.output_dir",
      says: ['duplicate key "output_dir" (first at line 3)'],
    });
    expectError("command: run\nexp: {}\nexp: {}\n", {
      line: 3,
      column: 1,
      keyPath: "exp",
      says: ['duplicate key "exp" (first at line 2)'],
    });
  });

  it("a top-level list, a scalar or an empty file is not a sweep", () => {
    expectError("- exp:\n    combinations: []\n", {
      line: 1,
      column: 1,
      says: ["the top level is a list of 1"],
    });
    expectError("just text\n", { line: 1, says: ['the top level is the string "just text"'] });
    expectError("", { line: 1, says: ["the file is empty"] });
    expectError("# only a comment\n", { line: 1, says: ["the file is empty"] });
  });
});

describe("combinations", () => {
  it("an empty list", () => {
    expectError("command: run\nexp:\n  combinations: []\n", {
      line: 3,
      column: 17,
      keyPath: "exp.combinations",
      says: ["is empty: list at least one `param: [values]`"],
    });
  });

  it("an entry with two keys says to split it", () => {
    expectError("command: run\nexp:\n  combinations:\n    - lr: [1]\n    - a: [1]\n      b: [2]\n", {
      line: 5,
      column: 7,
      keyPath: "exp.combinations[1]",
      says: ["has 2 keys (a, b)", "- a: [...]` and `- b: [...]` as separate entries"],
    });
  });

  it("an empty entry", () => {
    expectError("command: run\nexp:\n  combinations:\n    - {}\n", {
      line: 4,
      keyPath: "exp.combinations[0]",
      says: ["is an empty map"],
    });
  });

  it("an empty value list", () => {
    expectError("command: run\nexp:\n  combinations:\n    - lr: []\n", {
      line: 4,
      column: 11,
      keyPath: "exp.combinations[0].lr",
      says: ["has no values: list at least one"],
    });
  });

  it("values that are not a list", () => {
    expectError("command: run\nexp:\n  combinations:\n    - lr: 0.1\n", {
      line: 4,
      column: 11,
      keyPath: "exp.combinations[0].lr",
      says: ["expected a list of values; got number 0.1 — write lr: [0.1]"],
    });
    expectError("command: run\nexp:\n  combinations:\n    - lr:\n", {
      line: 4,
      keyPath: "exp.combinations[0].lr",
      says: ["expected a list of values; got nothing (null)"],
    });
  });

  it("combinations written as a mapping", () => {
    expectError("command: run\nexp:\n  combinations:\n    lr: [1]\n", {
      line: 4,
      keyPath: "exp.combinations",
      says: ["expected a list of single-key maps `- param: [values]`; got a mapping"],
    });
  });

  it("a parameter listed twice", () => {
    expectError("command: run\nexp:\n  combinations:\n    - lr: [1]\n    - lr: [2]\n", {
      line: 5,
      keyPath: "exp.combinations[1]",
      says: ['parameter "lr" is listed twice'],
    });
  });

  it("a parameter named phase is reserved", () => {
    expectError("command: run\nexp:\n  combinations:\n    - phase: [1]\n", {
      line: 4,
      keyPath: "exp.combinations[0].phase",
      says: ['"phase" is reserved'],
    });
    expectError("command: run\ndefaults:\n  phase: warmup\nexp: {}\n", {
      line: 3,
      keyPath: "defaults.phase",
    });
  });
});

describe("settings", () => {
  it("a bad timeout", () => {
    expectError("command: run\nexp:\n  timeout: 2 hours\n", {
      line: 3,
      column: 12,
      keyPath: "exp.timeout",
      says: ['expected a duration such as 90s, 30m, 2h or 1h30m; got the string "2 hours"'],
    });
    expectError("command: run\ntimeout: 0\nexp: {}\n", {
      line: 2,
      keyPath: "timeout",
      says: ["longer than 0"],
    });
    expectError("command: run\nbackoff: fast\nexp: {}\n", {
      line: 2,
      keyPath: "backoff",
      says: ["duration"],
    });
  });

  it("a gate typo says what a gate is and suggests the closest", () => {
    expectError("command: run\nexp:\n  gate: all_succeded\n", {
      line: 3,
      column: 9,
      keyPath: "exp.gate",
      says: [
        'expected "all_succeeded" or {min_success: 0.0–1.0}; got "all_succeded" — did you mean "all_succeeded"?',
      ],
    });
    expectError("command: run\nexp:\n  gate: {min_sucess: 0.9}\n", {
      line: 3,
      keyPath: "exp.gate",
      says: ['got key "min_sucess" — did you mean "min_success"?'],
    });
    expectError("command: run\nexp:\n  gate: 0.9\n", {
      line: 3,
      says: ["{min_success: 0.0–1.0}; got number 0.9"],
    });
  });

  it("a min_success given as a percentage", () => {
    expectError("command: run\nexp:\n  gate:\n    min_success: 90\n", {
      line: 4,
      column: 18,
      keyPath: "exp.gate.min_success",
      says: ["a fraction of tasks in (0, 1], e.g. 0.9 for 90%; got number 90 (0.9?)"],
    });
  });

  it("wrong types name what was expected and what was found", () => {
    expectError("command: run\nexp:\n  retries: 1.5\n", {
      line: 3,
      keyPath: "exp.retries",
      says: ["expected a whole number; got number 1.5"],
    });
    expectError("command: run\nexp:\n  retries: -1\n", { line: 3, says: ["must be ≥ 0; got number -1"] });
    expectError("command: run\nexp:\n  max_lost: 0\n", {
      line: 3,
      keyPath: "exp.max_lost",
      says: ["must be ≥ 1; got number 0"],
    });
    expectError("command: run\nexp:\n  after: warmup\nwarmup: {}\n", {
      line: 3,
      keyPath: "exp.after",
      says: ['expected a list of phase names; got the string "warmup" — write after: [warmup]'],
    });
    expectError("command: run\nseeds: 42\nexp: {}\n", {
      line: 2,
      keyPath: "seeds",
      says: ["write seeds: [42]"],
    });
    expectError("command: run\nseeds: [[1]]\nexp: {}\n", {
      line: 2,
      keyPath: "seeds[0]",
      says: ["expected a number or a string; got a list of 1"],
    });
    expectError("command: run\nexp:\n  defaults: [1]\n", {
      line: 3,
      keyPath: "exp.defaults",
      says: ["expected a mapping (key: value); got a list of 1"],
    });
    expectError("command: run\nexp:\n  resources:\n    gpus: two\n", {
      line: 4,
      keyPath: "exp.resources.gpus",
      says: ['expected a number; got the string "two"'],
    });
    expectError("command: run\nexp: 3\n", {
      line: 2,
      keyPath: "exp",
      says: ["must be a mapping", "number 3"],
    });
  });

  it("no phases", () => {
    expectError("command: run\ndefaults: {a: 1}\n", { line: 1, says: ["no phases"] });
  });
});

describe("missing command", () => {
  const text = "defaults: {lr: 1}\nexp:\n  combinations:\n    - seed: [1]\n";

  it("is an error at the phase", () => {
    expectError(text, {
      line: 2,
      column: 1,
      keyPath: "exp",
      says: ["no command: set `command:` at the top of the file or in this phase", "or pass --command"],
    });
  });

  it("is fixed by the defaultCommand option, which is checked like any command", () => {
    const [p] = parseSweepFile(FILE, text, {
      defaultCommand: "python run.py --seed {seed} --lr {lr}",
    }).phases;
    expect(p?.commandTemplate).toBe("python run.py --seed {seed} --lr {lr}");
    expectError(
      text,
      { line: 2, keyPath: "exp", says: ["undefined placeholder {sed}"] },
      { defaultCommand: "run {sed}" },
    );
  });
});

describe("across files", () => {
  const A = "/sweeps/a.yaml";
  const B = "/sweeps/sub/b.yaml";
  const sweepError = (a: string, b: string) =>
    errorOf(() =>
      loadSweep([
        { file: A, text: a },
        { file: B, text: b },
      ]),
    );

  it("a phase name defined in two files", () => {
    const error = sweepError("command: run\ntrain: {}\n", "command: run\nother: {}\n\ntrain: {}\n");
    expectPlace(error, {
      file: B,
      line: 4,
      column: 1,
      keyPath: "train",
      says: [`phase "train" is already defined at ${A}:2`],
    });
  });

  it("an unknown phase in after points at the entry and suggests the closest", () => {
    const error = sweepError(
      "command: run\neval:\n  after: [train, warmpu]\n",
      "command: run\nwarmup: {}\ntrain: {}\n",
    );
    expectPlace(error, {
      file: A,
      line: 3,
      column: 18,
      keyPath: "eval.after[1]",
      says: ['unknown phase "warmpu" — did you mean "warmup"?', "Phases: eval, warmup, train"],
    });
  });

  it("a cycle in after names the whole cycle", () => {
    const error = sweepError(
      "command: run\na:\n  after: [c]\n",
      "command: run\nb:\n  after: [a]\nc:\n  after:\n    - b\n",
    );
    // Found walking from a: a waits on c, c on b, and b's `after: [a]` closes the cycle.
    expectPlace(error, {
      file: B,
      line: 3,
      column: 11,
      keyPath: "b.after[0]",
      says: ["phases wait on each other in a cycle: a → c → b → a; remove one of these `after` entries"],
    });
    const self = sweepError("command: run\na:\n  after: [a]\n", "command: run\nb: {}\n");
    expectPlace(self, { file: A, line: 3, keyPath: "a.after[0]", says: ["cycle: a → a"] });
  });

  it("a valid chain across files loads", () => {
    const sweep = loadSweep([
      { file: A, text: "command: run\na: {}\nc:\n  after: [b]\n" },
      { file: B, text: "command: run\nb:\n  after: [a]\n" },
    ]);
    expect(sweep.phases.map((p) => [p.name, p.after])).toEqual([
      ["a", []],
      ["c", ["b"]],
      ["b", ["a"]],
    ]);
  });
});

describe("a real file on disk", () => {
  it("places errors by the path it was read from", () => {
    const dir = mkdtempSync(join(tmpdir(), "labsweep-sweep-errors-"));
    try {
      const file = join(dir, "sweep.yaml");
      writeFileSync(file, "command: run {lr}\n\nexp:\n  combinations:\n    - lr: [0.1]\n  gate: all\n");
      const error = errorOf(() => loadSweep([{ file, text: readFileSync(file, "utf8") }]));
      expectPlace(error, { file, line: 6, column: 9, keyPath: "exp.gate", says: ['got "all"'] });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
