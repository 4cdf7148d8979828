/**
 * End to end: bad input is refused with exit code 2 and one clear stderr line naming the place,
 * and nothing is written — no ledger, no output dir, and an existing ledger keeps its bytes.
 * Run `npm run build` first: these tests run bin/labsweep.js, which runs dist/.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { type CliResult, runCli, tempDir, writeFile } from "./helpers/cli.js";

/** Every file and dir under `root` with a hash of its bytes, so any write shows up. */
function snapshot(root: string): Record<string, string> {
  const entries: Record<string, string> = {};
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      const key = relative(root, path);
      if (statSync(path).isDirectory()) {
        entries[`${key}/`] = "dir";
        walk(path);
      } else entries[key] = createHash("sha256").update(readFileSync(path)).digest("hex");
    }
  };
  walk(root);
  return entries;
}

/** Exit 2 and exactly one stderr line, `labsweep: …`, with no stack trace and no stdout. */
function expectRefused(result: CliResult, ...mentions: Array<string | RegExp>): void {
  expect(result.code, `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`).toBe(2);
  const lines = result.stderr.split("\n").filter(Boolean);
  expect(lines, result.stderr).toHaveLength(1);
  const [line = ""] = lines;
  expect(line).toMatch(/^labsweep: /);
  for (const mention of mentions) {
    if (typeof mention === "string") expect(line).toContain(mention);
    else expect(line).toMatch(mention);
  }
  expect(result.stdout).toBe("");
}

const axis60 = `[${Array.from({ length: 60 }, (_, index) => index + 1).join(", ")}]`;

interface BadConfig {
  name: string;
  /** The config text; `DIR` is replaced by the test's temp dir. */
  text: string;
  /** What the one stderr line must mention (file:line:column or the field). */
  mentions: Array<string | RegExp>;
  /** Files to create first (relative path → content). */
  files?: Record<string, string>;
}

const BAD_CONFIGS: BadConfig[] = [
  {
    name: "malformed YAML",
    text: "command: echo {seed}\ntrain:\n  combinations:\n    - seed: [1, 2\n",
    mentions: [/sweep\.yaml:\d+:\d+: /, "invalid YAML"],
  },
  {
    name: "a misspelt key",
    text: "command: echo {seed}\ntrain:\n  output_dir: out\n  combinatons:\n    - seed: [1, 2]\n",
    mentions: ["sweep.yaml:4:3", "train.combinatons", 'did you mean "combinations"'],
  },
  {
    name: "a misspelt resource key",
    text: "command: echo {seed}\ntrain:\n  output_dir: out\n  resources:\n    gpu: 1\n  combinations:\n    - seed: [1]\n",
    mentions: ["sweep.yaml:5:5", "train.resources.gpu", '"gpus"'],
  },
  {
    name: "an undefined placeholder in the command",
    text: "command: python train.py --seed {sed}\ntrain:\n  output_dir: out\n  combinations:\n    - seed: [1, 2]\n",
    mentions: [/sweep\.yaml:1:\d+: /, "{sed}", '"seed"'],
  },
  {
    name: "an undefined placeholder in output_dir",
    text: "command: echo {seed}\ntrain:\n  output_dir: out/{dataset}\n  combinations:\n    - seed: [1, 2]\n",
    mentions: [/sweep\.yaml:3:\d+: /, "train.output_dir", "{dataset}"],
  },
  {
    name: "no command",
    text: "train:\n  output_dir: out\n  combinations:\n    - seed: [1, 2]\n",
    mentions: [/sweep\.yaml:1:\d+: /, "no command", "--command"],
  },
  {
    name: "empty combinations",
    text: "command: echo hi\ntrain:\n  output_dir: out\n  combinations: []\n",
    mentions: [/sweep\.yaml:4:\d+: /, "train.combinations", "empty"],
  },
  {
    name: "an axis with no values",
    text: "command: echo {seed}\ntrain:\n  output_dir: out\n  combinations:\n    - seed: []\n",
    mentions: [/sweep\.yaml:5:\d+: /, "train.combinations[0].seed"],
  },
  {
    name: "an output dir under a regular file",
    text: "command: echo {seed}\ntrain:\n  output_dir: blocker/out\n  combinations:\n    - seed: [1, 2]\n",
    files: { blocker: "a file, not a dir\n" },
    mentions: [/sweep\.yaml:\d+:\d+: /, "train.output_dir", "blocker is not a directory"],
  },
  {
    name: "a grid over 10 million tasks without --yes",
    text: `command: echo {a} {b} {c} {d}\nhuge:\n  output_dir: out\n  combinations:\n    - a: ${axis60}\n    - b: ${axis60}\n    - c: ${axis60}\n    - d: ${axis60}\n`,
    mentions: [/sweep\.yaml:2:\d+: /, "12,960,000 tasks", "--yes"],
  },
];

describe("bad configs: exit 2, one line, nothing written", () => {
  it.each(BAD_CONFIGS)("$name, with no ledger yet", async (bad) => {
    const dir = tempDir();
    for (const [name, content] of Object.entries(bad.files ?? {})) writeFile(dir, name, content);
    const config = writeFile(dir, "sweep.yaml", bad.text);
    const before = snapshot(dir);

    for (const args of [
      ["run", config, "--slots", "1"],
      ["plan", config],
    ]) {
      expectRefused(await runCli(args, { cwd: dir }), ...bad.mentions);
    }
    expect(existsSync(join(dir, ".labsweep"))).toBe(false);
    expect(existsSync(join(dir, "out"))).toBe(false);
    expect(snapshot(dir)).toEqual(before);
  });

  it("leaves an existing ledger and results byte for byte unchanged", async () => {
    const dir = tempDir();
    writeFile(dir, "blocker", "a file, not a dir\n");
    writeFile(dir, "task.sh", `printf '{"acc": %s}' "$1" > "$LABSWEEP_RESULT_FILE"\n`);
    const config = writeFile(
      dir,
      "sweep.yaml",
      "command: sh task.sh {seed}\ntrain:\n  output_dir: out\n  combinations:\n    - seed: [1, 2]\n",
    );
    const good = await runCli(["run", config, "--slots", "2"], { cwd: dir });
    expect(good.code, good.stderr).toBe(0);
    expect(existsSync(join(dir, ".labsweep", "ledger.sqlite"))).toBe(true);

    for (const bad of BAD_CONFIGS) {
      // The same path, so the default state dir is the existing ledger's.
      writeFile(dir, "sweep.yaml", bad.text);
      const before = snapshot(dir);
      expectRefused(await runCli(["run", config, "--slots", "1"], { cwd: dir }), ...bad.mentions);
      expect(snapshot(dir), bad.name).toEqual(before);
    }
  });
});

describe("bad command lines: exit 2", () => {
  it("status with no ledger says so and creates nothing", async () => {
    const dir = tempDir();
    const config = writeFile(
      dir,
      "sweep.yaml",
      "command: echo {seed}\ntrain:\n  combinations:\n    - seed: [1]\n",
    );
    const before = snapshot(dir);
    for (const args of [
      ["status", config],
      ["status", config, "--json"],
      ["status", "--state", join(dir, "nowhere")],
      ["export", config],
    ]) {
      const result = await runCli(args, { cwd: dir });
      expect(result.code, `${args.join(" ")}: ${result.stderr}`).toBe(2);
      const lines = result.stderr.split("\n").filter(Boolean);
      expect(lines, `${args.join(" ")}: ${result.stderr}`).toHaveLength(1);
      expect(lines[0]).toMatch(/^labsweep: no ledger in \//);
    }
    expect(snapshot(dir)).toEqual(before);
  });

  // KNOWN BUG (src/cli/retry.ts): retry opens the ledger read-write, which creates an empty one
  // (also under a mistyped --state) and reports "0 failed tasks" with exit 0. Flip to `it` once
  // retry refuses a missing ledger like status and export do.
  it("retry with no ledger says so and creates nothing", async () => {
    const dir = tempDir();
    const config = writeFile(
      dir,
      "sweep.yaml",
      "command: echo {seed}\ntrain:\n  combinations:\n    - seed: [1]\n",
    );
    const result = await runCli(["retry", config, "--failed"], { cwd: dir });
    expect(existsSync(join(dir, ".labsweep")), "a ledger was created").toBe(false);
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toMatch(/^labsweep: no ledger in \//);
  });

  it("an unknown flag, an unknown command or a bad flag value is refused before anything runs", async () => {
    const dir = tempDir();
    const config = writeFile(
      dir,
      "sweep.yaml",
      "command: echo {seed}\ntrain:\n  output_dir: out\n  combinations:\n    - seed: [1]\n",
    );
    const before = snapshot(dir);
    const cases: Array<{ args: string[]; mention: string }> = [
      { args: ["run", config, "--bogus"], mention: "--bogus" },
      { args: ["run", config, "--slot", "2"], mention: "--slot" },
      { args: ["frobnicate", config], mention: "frobnicate" },
      { args: ["run", config, "--slots", "0"], mention: "--slots" },
      { args: ["run", config, "--slots", "two"], mention: "--slots" },
      { args: ["run", config, "--gpus", "a,b"], mention: "--gpus" },
      { args: ["run", join(dir, "missing.yaml")], mention: "missing.yaml" },
      { args: ["export", config, "--format", "xml"], mention: "--format" },
    ];
    for (const { args, mention } of cases) {
      const result = await runCli(args, { cwd: dir });
      expect(result.code, `${args.join(" ")}: ${result.stderr}`).toBe(2);
      expect(result.stderr.split("\n")[0], args.join(" ")).toContain(mention);
      expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
    }
    expect(snapshot(dir)).toEqual(before);
  });
});
