import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { taskSignature } from "../src/sweep/canonical.js";
import { expandPhase, gridSize, outputDirsOf, phaseSignatures, spelledText } from "../src/sweep/expand.js";
import { loadSweep, parseSweepFile } from "../src/sweep/loadSweep.js";
import { renderTemplate, shellQuoteText } from "../src/sweep/template.js";
import type { Params, ParamValue, PhaseSpec, TaskSpec } from "../src/sweep/types.js";

const here = dirname(fileURLToPath(import.meta.url));
const fixtures = join(here, "fixtures", "sweep");
const goldenDir = join(here, "golden");

/** The phases of one config given as text, under a fake path (parsing reads no files). */
function phasesOf(text: string, file = "/sweeps/exp/sweep.yaml"): PhaseSpec[] {
  return parseSweepFile(file, text).phases;
}

function phase(text: string, name?: string): PhaseSpec {
  const phases = phasesOf(text);
  const found = name ? phases.find((p) => p.name === name) : phases[0];
  if (!found) throw new Error(`no phase ${name}`);
  return found;
}

const tasksOf = (p: PhaseSpec): TaskSpec[] => [...expandPhase(p)];

/**
 * Compares `actual` with the committed golden JSON file; UPDATE_GOLDEN=1 rewrites it. Compared
 * as parsed JSON, so the formatter may lay the file out as it likes.
 */
function expectGolden(name: string, actual: unknown): void {
  const path = join(goldenDir, name);
  if (process.env.UPDATE_GOLDEN === "1") writeFileSync(path, `${JSON.stringify(actual, null, 2)}\n`);
  if (!existsSync(path))
    throw new Error(`missing golden file ${path}: run with UPDATE_GOLDEN=1 to create it`);
  expect(actual).toEqual(JSON.parse(readFileSync(path, "utf8")));
}

describe("golden: two phases and a second file that share points", () => {
  const files = ["main.yaml", "extra/ablation.yaml"].map((name) => {
    const file = join(fixtures, name);
    return { file, text: readFileSync(file, "utf8") };
  });
  const sweep = loadSweep(files);
  const rel = (path: string) => relative(fixtures, path) || ".";

  it("de-duplicates by signature into the committed golden", () => {
    const unique = new Map<
      string,
      { signature: string; params: Params; command: string; cwd: string; placements: object[] }
    >();
    const phases: Record<string, object> = {};
    for (const p of sweep.phases) {
      let merged = 0;
      const seen = new Set<string>();
      for (const task of expandPhase(p)) {
        const placement = { phase: task.placement.phase, outputDir: rel(task.placement.outputDir) };
        const known = unique.get(task.signature);
        if (known) {
          merged++;
          known.placements.push(placement);
        } else {
          unique.set(task.signature, {
            signature: task.signature,
            params: task.params,
            command: task.command,
            cwd: rel(task.cwd),
            placements: [placement],
          });
        }
        seen.add(task.signature);
      }
      phases[p.name] = {
        file: rel(p.file),
        line: p.line,
        gridSize: gridSize(p),
        uniqueInPhase: seen.size,
        mergedWithEarlier: merged,
        outputDirs: outputDirsOf(p).map(rel),
        after: p.after,
        gate: p.gate,
      };
    }
    const golden = { phases, uniqueTasks: unique.size, tasks: [...unique.values()] };
    expectGolden("sweep.expand.json", golden);
  });

  it("puts a shared task in every phase and output dir that lists it", () => {
    const placementsOf = new Map<string, string[]>();
    for (const p of sweep.phases) {
      for (const task of expandPhase(p)) {
        const list = placementsOf.get(task.signature) ?? [];
        list.push(`${task.placement.phase}:${rel(task.placement.outputDir)}`);
        placementsOf.set(task.signature, list);
      }
    }
    // model cnn, lr 0.1, seed 1: in baseline, finetune and the other file's ablation.
    const baseline = sweep.phases.find((p) => p.name === "baseline") as PhaseSpec;
    const first = tasksOf(baseline)[0] as TaskSpec;
    expect(first.params).toEqual({ model: "cnn", lr: 0.1, seed: 1 });
    expect(placementsOf.get(first.signature)).toEqual([
      "baseline:results/baseline/cnn",
      "finetune:results/finetune/lr_0.1",
      "ablation:extra/out/cnn-s1",
    ]);
    // The same parameters under another command template are another task.
    const fast = sweep.phases.find((p) => p.name === "other_command") as PhaseSpec;
    const fastTask = tasksOf(fast)[0] as TaskSpec;
    expect(fastTask.signature).not.toBe(first.signature);
    expect(placementsOf.get(fastTask.signature)).toEqual(["other_command:extra/out/fast"]);
  });

  it("resolves relative paths against each config file's dir", () => {
    const ablation = sweep.phases.find((p) => p.name === "ablation") as PhaseSpec;
    expect(ablation.baseDir).toBe(join(fixtures, "extra"));
    for (const task of expandPhase(ablation)) {
      expect(task.cwd).toBe(join(fixtures, "extra"));
      expect(task.configFile).toBe(join(fixtures, "extra", "ablation.yaml"));
      expect(dirname(task.placement.outputDir)).toBe(join(fixtures, "extra", "out"));
    }
  });
});

describe("grid order and size", () => {
  it("expands combinations in itertools.product order: the last axis varies fastest", () => {
    const p = phase(`
command: run {a} {b} {c}
exp:
  combinations:
    - a: [1, 2]
    - b: [x, y, z]
    - c: [true, false]
`);
    expect(gridSize(p)).toBe(12);
    const points = tasksOf(p).map((t) => [t.params.a, t.params.b, t.params.c]);
    const expected: unknown[] = [];
    for (const a of [1, 2])
      for (const b of ["x", "y", "z"]) for (const c of [true, false]) expected.push([a, b, c]);
    expect(points).toEqual(expected);
  });

  it("layers file defaults ← phase defaults ← one combination, keeping declaration order", () => {
    const p = phase(`
command: run {a} {b} {c} {d}
defaults: { a: file, b: file, c: file }
exp:
  defaults: { b: phase, d: phase }
  combinations:
    - c: [combo]
`);
    const [task] = tasksOf(p);
    expect(task?.params).toEqual({ a: "file", b: "phase", c: "combo", d: "phase" });
    expect(Object.keys(task?.params ?? {})).toEqual(["a", "b", "c", "d"]);
  });

  it("signs, renders and lists params per grid point exactly as the one-task functions do", () => {
    // Expansion precomputes per axis value (compiledGrid.ts); every point must still match
    // taskSignature, renderTemplate and plain layering, and phaseSignatures must agree.
    const p = phase(
      'command: run --lr {lr} --name "{name}" \'{tag}\' {seed}\ndefaults: {lr: 0.1, seed: 4.0, tag: "it\'s"}\n' +
        'exp:\n  output_dir: out/{name}/{lr}\n  combinations:\n    - name: [a b, "$x", \'q"\']\n    - lr: [1, 1.0, .inf]\n    - seed: [1, 2]\n',
    );
    const tasks = tasksOf(p);
    expect(tasks).toHaveLength(18);
    // One object reused from point to point: copied as it comes.
    const points: Array<{ signature: string; outputDir: string; params: Params }> = [];
    for (const point of phaseSignatures(p))
      points.push({ signature: point.signature, outputDir: point.outputDir, params: point.params() });
    tasks.forEach((task, index) => {
      expect(task.signature).toBe(taskSignature(task.params, p.commandTemplate));
      const layered: Params = {
        ...p.defaults,
        name: task.params.name as ParamValue,
        lr: task.params.lr as ParamValue,
        seed: task.params.seed as ParamValue,
      };
      expect(Object.keys(task.params)).toEqual(Object.keys(layered));
      expect(task.params).toEqual(layered);
      expect(task.command).toBe(
        renderTemplate(p.commandTemplate, task.params, (value, name, context) =>
          shellQuoteText(spelledText(p.writtenAs)(value, name), context),
        ),
      );
      expect(points[index]).toEqual({
        signature: task.signature,
        outputDir: task.placement.outputDir,
        params: task.params,
      });
    });
    // lr 1 and 1.0 are one value: half the points share a signature with another.
    expect(new Set(tasks.map((task) => task.signature)).size).toBe(12);
    const bare = phase('command: "true"\nexp: {}\n');
    expect(tasksOf(bare)[0]?.signature).toBe(taskSignature({}, '"true"'.slice(1, -1)));
  });

  it("gives a phase without combinations one task from its defaults", () => {
    const p = phase("command: run {x}\ndefaults: {x: 1}\nexp: {}\n");
    expect(gridSize(p)).toBe(1);
    expect(tasksOf(p).map((t) => t.command)).toEqual(["run 1"]);
  });

  it("expands lazily: the first task of a huge grid comes at once", () => {
    const values = Array.from({ length: 1000 }, (_, i) => i);
    const text = `command: run {a} {b} {c}\nexp:\n  combinations:\n${["a", "b", "c"]
      .map((name) => `    - ${name}: [${values.join(", ")}]`)
      .join("\n")}\n`;
    const p = phase(text);
    expect(gridSize(p)).toBe(1e9);
    const first = expandPhase(p).next().value as TaskSpec;
    expect(first.command).toBe("run 0 0 0");
  });
});

describe("legacy file-level seeds", () => {
  const text = `
command: run {seed} {lr}
seeds: [1, 2, 3]
defaults: { lr: 0.5 }
no_seed:
  combinations:
    - lr: [0.1, 0.2]
lists_seed:
  combinations:
    - lr: [0.1]
    - seed: [7, 8]
seed_in_defaults:
  defaults: { seed: 5 }
no_combinations: {}
`;
  const phases = phasesOf(text);
  const byName = (name: string) => phases.find((p) => p.name === name) as PhaseSpec;
  const seedsOf = (name: string) => tasksOf(byName(name)).map((t) => [t.params.seed, t.params.lr]);

  it("multiplies every phase whose combinations do not list seed, seed varying slowest", () => {
    expect(seedsOf("no_seed")).toEqual([
      [1, 0.1],
      [1, 0.2],
      [2, 0.1],
      [2, 0.2],
      [3, 0.1],
      [3, 0.2],
    ]);
    expect(seedsOf("no_combinations").map(([seed]) => seed)).toEqual([1, 2, 3]);
  });

  it("leaves a phase that lists seed in its combinations alone", () => {
    expect(seedsOf("lists_seed")).toEqual([
      [7, 0.1],
      [8, 0.1],
    ]);
  });

  it("overrides a seed given only in defaults, as the original system's seed loop did", () => {
    expect(seedsOf("seed_in_defaults").map(([seed]) => seed)).toEqual([1, 2, 3]);
  });
});

describe("task identity", () => {
  const signatures = (text: string) => phasesOf(text).map((p) => tasksOf(p).map((t) => t.signature));

  it("compares numbers by value: 4, 4.0 and '4' are one task", () => {
    const [a, b, c, d] = signatures(`
command: run {x}
p1: { combinations: [ { x: [4] } ] }
p2: { combinations: [ { x: [4.0] } ] }
p3: { combinations: [ { x: ["4"] } ] }
p4: { combinations: [ { x: ["4.0", 4.5] } ] }
`);
    expect(b).toEqual(a);
    expect(c).toEqual(a);
    expect(d?.[0]).toEqual(a?.[0]);
    expect(d?.[1]).not.toEqual(a?.[0]);
  });

  it('treats "True", "true" and true as one value, "yes" as another', () => {
    const [a, b, c, d] = signatures(`
command: run {flag}
p1: { defaults: { flag: true } }
p2: { defaults: { flag: "True" } }
p3: { defaults: { flag: "true" } }
p4: { defaults: { flag: "yes" } }
`);
    expect(b).toEqual(a);
    expect(c).toEqual(a);
    expect(d).not.toEqual(a);
  });

  it("depends on the command template, not the phase name or output dir", () => {
    const [a, b, c] = signatures(`
command: run {x}
alpha: { output_dir: one, combinations: [ { x: [1] } ] }
beta: { output_dir: two, combinations: [ { x: [1] } ] }
gamma: { command: "run {x} ", combinations: [ { x: [1] } ] }
`);
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
  });

  it("is the same whether a parameter comes from defaults or a combination", () => {
    const [a, b] = signatures(`
command: run {x} {y}
p1: { defaults: { x: 1, y: 2 } }
p2: { defaults: { y: 2 }, combinations: [ { x: [1] } ] }
`);
    expect(b).toEqual(a);
  });

  it("is the same for a phase-level command equal to the file-level one", () => {
    const [a, b] = signatures(`
command: run {x}
p1: { defaults: { x: 1 } }
p2: { command: "run {x}", defaults: { x: 1 } }
`);
    expect(b).toEqual(a);
  });
});

// biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax, not a JS template
const HOME_VAR = "${HOME}";

describe("rendering", () => {
  /** Runs a rendered command through a real /bin/sh and returns what it printed. */
  const sh = (command: string, env: NodeJS.ProcessEnv = process.env) =>
    execFileSync("/bin/sh", ["-c", command], { encoding: "utf8", env });

  const hostile = [
    "'; echo x",
    "a b",
    "  two  spaces  ",
    'dq"uote',
    "sq'uote",
    `mixed'"\\`,
    "new\nline",
    "$HOME",
    HOME_VAR,
    "`id`",
    "$(id)",
    "a;b|c&d>e<f",
    "*",
    "~",
    "-n",
    "",
    "{x}",
    "#not a comment",
  ];

  it.each(hostile)("delivers %j to the command as exactly one argument, intact", (value) => {
    const p = phase(
      `command: printf '[%s]' {v} "{v}" '{v}' pre{v}post "pre {v} post"\nexp:\n  combinations:\n    - v: [${JSON.stringify(value)}]\n`,
    );
    const [task] = tasksOf(p);
    expect(task?.params.v).toBe(value);
    const printed = sh(task?.command as string);
    expect(printed).toBe(`[${value}][${value}][${value}][pre${value}post][pre ${value} post]`);
  });

  it("leaves plain values unquoted", () => {
    const p = phase(
      "command: run --lr {lr} --name {name} --path {path}\nexp:\n  defaults: {lr: 0.5, name: a-b_c, path: data/x.csv}\n",
    );
    expect(tasksOf(p)[0]?.command).toBe("run --lr 0.5 --name a-b_c --path data/x.csv");
  });

  it("turns {{ and }} into braces and leaves braced shell variables to the shell", () => {
    const p = phase(
      `command: printf '%s|' {{v}} {{{v}}} "${HOME_VAR}" $HOME {v} '{print $1}'\nexp:\n  defaults: {v: 1}\n`,
    );
    const command = tasksOf(p)[0]?.command as string;
    expect(command).toBe(`printf '%s|' {v} {1} "${HOME_VAR}" $HOME 1 '{print $1}'`);
    expect(sh(command, { ...process.env, HOME: "/home/somebody" })).toBe(
      "{v}|{1}|/home/somebody|/home/somebody|1|{print $1}|",
    );
  });

  it("renders numbers and booleans as written in the config, while params hold values", () => {
    const p = phase(`
command: run --lr {lr} --flag {flag} --seed {seed}
seeds: [1, 2.0]
exp:
  defaults: { flag: True }
  output_dir: out/lr_{lr}
  combinations:
    - lr: [0.0, 1e-3, 1.50, 5, 0x10]
`);
    const tasks = tasksOf(p).filter((t) => t.params.seed === 1);
    expect(tasks.map((t) => t.params.lr)).toEqual([0, 0.001, 1.5, 5, 16]);
    expect(tasks.map((t) => t.command)).toEqual([
      "run --lr 0.0 --flag True --seed 1",
      "run --lr 1e-3 --flag True --seed 1",
      "run --lr 1.50 --flag True --seed 1",
      "run --lr 5 --flag True --seed 1",
      "run --lr 16 --flag True --seed 1",
    ]);
    expect(tasks.map((t) => relative("/sweeps/exp", t.placement.outputDir))).toEqual([
      "out/lr_0.0",
      "out/lr_1e-3",
      "out/lr_1.50",
      "out/lr_5",
      "out/lr_16",
    ]);
    expect(tasksOf(p).find((t) => t.params.seed === 2)?.command).toBe("run --lr 0.0 --flag True --seed 2.0");
  });

  it("renders .inf and .nan as Python does and structured values as JSON", () => {
    const p = phase(`
command: run {clip} {v} {layers} {opt} {none}
exp:
  defaults: { v: .nan, layers: [64, 64], opt: { name: adam }, none: null }
  combinations:
    - clip: [.inf, -.inf]
`);
    expect(tasksOf(p).map((t) => t.command)).toEqual([
      `run inf nan '[64,64]' '{"name":"adam"}' ''`,
      `run -inf nan '[64,64]' '{"name":"adam"}' ''`,
    ]);
  });

  it("follows YAML merge keys (<<: *anchor), as PyYAML did", () => {
    const phases = phasesOf(`
command: run {lr} {model}
base: &base
  defaults: { model: cnn }
  combinations:
    - lr: [0.10]
derived:
  <<: *base
  defaults: { model: mlp }
`);
    expect(phases.map((p) => tasksOf(p).map((t) => t.command))).toEqual([["run 0.10 cnn"], ["run 0.10 mlp"]]);
  });
});

describe("outputDirsOf", () => {
  it("lists the distinct output dirs a phase's tasks write to, from the axes the template uses", () => {
    const p = phase(`
command: run {a} {b} {seed}
seeds: [1, 2]
exp:
  defaults: { base: res }
  output_dir: "{base}/{phase}/a_{a}"
  combinations:
    - a: [1, 2.50, 1]
    - b: [x, y, z]
`);
    const dirs = outputDirsOf(p);
    expect(dirs).toEqual(["/sweeps/exp/res/exp/a_1", "/sweeps/exp/res/exp/a_2.50"]);
    expect(new Set(tasksOf(p).map((t) => t.placement.outputDir))).toEqual(new Set(dirs));
  });

  it("defaults to results/{phase} beside the config and keeps absolute dirs absolute", () => {
    const [p1, p2] = phasesOf('command: run\nfirst: {}\nsecond: { output_dir: "/abs/{phase}" }\n');
    expect(outputDirsOf(p1 as PhaseSpec)).toEqual(["/sweeps/exp/results/first"]);
    expect(outputDirsOf(p2 as PhaseSpec)).toEqual(["/abs/second"]);
  });

  it("uses the file-level output_dir when the phase has none", () => {
    const p = phase("command: run {x}\noutput_dir: r/{x}\nexp: { combinations: [ { x: [a, b] } ] }\n");
    expect(outputDirsOf(p)).toEqual(["/sweeps/exp/r/a", "/sweeps/exp/r/b"]);
  });
});
