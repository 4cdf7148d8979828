/**
 * Fuzz, seeded (FUZZ_SEED=n replays a run): hostile configs and hostile parameter values.
 *
 * - Configs — random YAML structures, wrong types, typos, unicode, random mutations of valid
 *   files, and named attacks (billion laughs, self-merging anchors, deep nesting, duplicate keys,
 *   huge grids, NUL): each goes through the check `run`, `serve` and `add` share
 *   (`checkSweep`). Every case ends in a result or a ConfigError whose message starts with
 *   file:line:column; any other exception is a failure that prints the seed and the text.
 * - Values — quotes, `;`, `$()`, backticks, newlines, backslashes, unicode, 10 kB strings —
 *   rendered through templates in every accepted quoting context and run with a real `sh -c`:
 *   each must arrive byte-exact, and a canary file that an injected command would create must
 *   never appear. Random templates built from shell fragments are refused with a place, or run
 *   with injecting values without creating the canary.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { checkSweep } from "../src/coordinator/openSweep.js";
import { ConfigError } from "../src/sweep/configError.js";
import { expandPhase } from "../src/sweep/expand.js";
import type { Sweep } from "../src/sweep/loadSweep.js";
import { tempDir } from "./helpers/cli.js";
import { mulberry32 } from "./helpers/random.js";

const SEED = Number(process.env.FUZZ_SEED ?? 20_261_207);

function generator(seed: number) {
  const next = mulberry32(seed);
  const int = (n: number): number => Math.floor(next() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)] as T;
  return { next, int, pick };
}

type Gen = ReturnType<typeof generator>;

/** Checks one config text; returns the sweep, or null for a well-placed ConfigError. */
function judge(dir: string, text: string, what: string): Sweep | null {
  const file = join(dir, "sweep.yaml");
  try {
    return checkSweep([{ file, text }]);
  } catch (error) {
    if (!(error instanceof ConfigError)) {
      throw new Error(`seed ${SEED}, ${what}: ${String(error)} for:\n${text.slice(0, 2000)}`, {
        cause: error,
      });
    }
    const placed = error.message.startsWith(`${file}:`) && /^[^:]+:\d+:\d+: /.test(error.message);
    if (!placed) throw new Error(`seed ${SEED}, ${what}: error without file:line:column: ${error.message}`);
    if (error.message.includes("\n"))
      throw new Error(`seed ${SEED}, ${what}: a multi-line error: ${JSON.stringify(error.message)}`);
    return null;
  }
}

/** A few tasks of each phase render to commands without NUL (the rest of a big grid is alike). */
function expandSome(sweep: Sweep): void {
  for (const phase of sweep.phases) {
    let count = 0;
    for (const task of expandPhase(phase)) {
      expect(typeof task.command).toBe("string");
      expect(task.command.includes("\0")).toBe(false);
      if (++count >= 20) break;
    }
  }
}

const KEYS = [
  "command",
  "defaults",
  "seeds",
  "output_dir",
  "retries",
  "timeout",
  "backoff",
  "resources",
  "launcher",
  "combinations",
  "after",
  "gate",
  "comand",
  "exp",
  "phase",
  "__proto__",
  "constructor",
  "ünïcødé",
  "🙂",
  "",
  "a.b",
  "lr",
  "seed",
  "gpus",
  "name",
  "min_success",
  "extra_args",
  "master_port",
];
const STRINGS = [
  "echo {x}",
  "python train.py --lr {lr}",
  "{x}",
  "{{",
  "}}",
  "{lr:.3f}",
  "'",
  '"',
  "\\{x}",
  "# {x}",
  "cat <<EOF\n{x}\nEOF",
  "`{x}`",
  "$(echo {x})",
  // biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax, not a JS template
  "${x}",
  "torchrun",
  "accelerate",
  "auto",
  "1h30m",
  "-5s",
  "all_succeeded",
  "results/{phase}",
  "/proc/nonexistent/{x}",
  "\u202e\u0000",
  "x".repeat(5000),
];

function randomValue(gen: Gen, depth: number): unknown {
  const kind = gen.int(depth > 3 ? 6 : 9);
  switch (kind) {
    case 0:
      return gen.pick(STRINGS);
    case 1:
      return gen.pick([0, 1, -1, 0.5, 1e308, -0, 3, 65_536, Number.NaN, Number.POSITIVE_INFINITY]);
    case 2:
      return gen.pick([true, false, null]);
    case 3:
      return gen.pick(KEYS);
    case 4:
      return gen.int(100);
    case 5:
      return "";
    case 6:
    case 7: {
      const list: unknown[] = [];
      for (let i = gen.int(5); i > 0; i--) list.push(randomValue(gen, depth + 1));
      return list;
    }
    default:
      return randomMap(gen, depth + 1);
  }
}

function randomMap(gen: Gen, depth: number): Record<string, unknown> {
  const map: Record<string, unknown> = {};
  for (let i = gen.int(5); i > 0; i--)
    Object.defineProperty(map, gen.pick(KEYS), {
      value: randomValue(gen, depth),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  return map;
}

/** A config that is nearly right: the shape of a real one with random parts swapped in. */
function nearlyValid(gen: Gen): string {
  const phase: Record<string, unknown> = {
    combinations: [{ x: [1, 2] }, { lr: [0.1, "0.2"] }],
    output_dir: gen.pick(["out/{x}", "results/{phase}", "out"]),
  };
  const config: Record<string, unknown> = { command: "echo {x} {lr}", exp: phase };
  for (let i = gen.int(3); i > 0; i--) {
    const target = gen.next() < 0.5 ? config : phase;
    target[gen.pick(KEYS)] = randomValue(gen, 1);
  }
  return stringify(config);
}

const MUTATIONS = [
  "",
  "'",
  '"',
  "[",
  "]",
  "{",
  "}",
  ":",
  "- ",
  "\t",
  "\n",
  "&a ",
  "*a",
  "#",
  "\u00a0",
  "🙂",
  "\r\n",
  "\0",
  "!!",
  "<<: ",
];

function mutate(gen: Gen, text: string): string {
  let out = text;
  for (let i = 1 + gen.int(4); i > 0; i--) {
    const at = gen.int(out.length + 1);
    const action = gen.int(3);
    if (action === 0) out = out.slice(0, at) + gen.pick(MUTATIONS) + out.slice(at);
    else if (action === 1) out = out.slice(0, at) + out.slice(at + 1 + gen.int(5));
    else {
      const lines = out.split("\n");
      const line = gen.int(lines.length);
      lines.splice(gen.int(lines.length), 0, lines[line] ?? "");
      out = lines.join("\n");
    }
  }
  return out;
}

const VALID = `command: python train.py --lr {lr} --x {x}
defaults: {x: 1}
seeds: [1, 2]
retries: 1
exp:
  output_dir: out/{x}
  launcher: {name: torchrun, master_port: auto}
  resources: {gpus: 2}
  combinations:
    - lr: [0.1, 0.01]
second:
  after: [exp]
  defaults: {lr: 0.5}
  gate: {min_success: 0.5}
  combinations:
    - x: [a, "b c"]
`;

const laughs = (() => {
  const lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  for (let i = 1; i < 9; i++)
    lines.push(
      `a${i}: &a${i} [${Array(9)
        .fill(`*a${i - 1}`)
        .join(",")}]`,
    );
  return `${lines.join("\n")}\n`;
})();

const NAMED: Array<[string, string]> = [
  ["billion laughs", laughs],
  [
    "billion laughs in combinations",
    `command: echo {x}\nexp:\n  combinations:\n    - x: ${laughs
      .split("\n")
      .at(-2)
      ?.replace(/^a8: &a8 /, "")}\n`,
  ],
  ["a merge key that includes itself", "a: &a\n  <<: *a\nexp: {}\n"],
  ["a merge key with a scalar", "a:\n  <<: 1\nexp: {}\n"],
  ["deep flow nesting", `a: ${"[".repeat(20_000)}${"]".repeat(20_000)}\n`],
  ["deep block nesting", `${Array.from({ length: 2000 }, (_, i) => `${" ".repeat(i)}k:`).join("\n")} 1\n`],
  ["duplicate phase keys", "command: echo {x}\nexp:\n  defaults: {x: 1}\nexp:\n  defaults: {x: 2}\n"],
  ["duplicate keys in a flow map", "command: echo {x}\nexp: {defaults: {x: 1, x: 2}}\n"],
  [
    "a grid over 10 million",
    `command: echo {a}{b}{c}{d}\nexp:\n  combinations:\n${["a", "b", "c", "d"].map((n) => `    - ${n}: [${Array.from({ length: 60 }, (_, i) => i).join(",")}]`).join("\n")}\n`,
  ],
  ["a NUL in a value", 'command: echo {x}\nexp:\n  defaults: {x: "a\\0b"}\n'],
  ["a raw NUL in the text", "command: echo {x}\u0000\nexp:\n  defaults: {x: 1}\n"],
  ["a byte-order mark and CRLF", "\ufeffcommand: echo {x}\r\nexp:\r\n  defaults: {x: 1}\r\n"],
  ["unicode names", "command: echo {ä}\nфаза:\n  defaults: {ä: 🙂}\n"],
  ["__proto__ at the top", "command: echo {x}\n__proto__: {x: 1}\nexp:\n  defaults: {x: 1}\n"],
  ["__proto__ as a parameter", "command: echo {x}\nexp:\n  defaults: {__proto__: 1, x: 2}\n"],
  ["a 1 MB value", `command: echo {x}\nexp:\n  defaults: {x: "${"y".repeat(1_000_000)}"}\n`],
  ["tags", "command: !!binary aGVsbG8=\nexp: !!set {a, b}\n"],
  ["an empty document", ""],
  ["only a comment", "# nothing\n"],
  ["a scalar", "42\n"],
  ["a phase name with a line break", '"a\\nb": 1\n'],
  ["a key with a line break", 'command: echo\nexp: {"de\\nfaults": 1}\n'],
  ["two documents", "command: echo\nexp: {}\n---\nother: {}\n"],
];

describe(`fuzz: hostile configs (seed ${SEED})`, () => {
  it("named attacks end in a result or a placed ConfigError", () => {
    const dir = tempDir();
    for (const [what, text] of NAMED) {
      const sweep = judge(dir, text, what);
      if (sweep) expandSome(sweep);
    }
    expect(judge(dir, NAMED[0]?.[1] ?? "", "laughs")).toBeNull();
    expect(judge(dir, NAMED[7]?.[1] ?? "", "huge")).toBeNull();
    const deep = (() => {
      try {
        checkSweep([{ file: join(dir, "deep.yaml"), text: NAMED[4]?.[1] ?? "" }]);
      } catch (error) {
        return (error as Error).message;
      }
      return "accepted";
    })();
    expect(deep).toMatch(/deep\.yaml:\d+:\d+: invalid YAML: the nesting is too deep/);
  });

  it("random structures, nearly valid configs and mutations never crash", () => {
    const dir = tempDir();
    const gen = generator(SEED);
    let accepted = 0;
    for (let n = 0; n < 400; n++) {
      const form = n % 4;
      const text =
        form === 0
          ? stringify(randomMap(gen, 0))
          : form === 1
            ? nearlyValid(gen)
            : mutate(gen, form === 2 ? VALID : nearlyValid(gen));
      const sweep = judge(dir, text, `case ${n}`);
      if (sweep) {
        accepted++;
        expandSome(sweep);
      }
    }
    // The mix must exercise both sides.
    expect(accepted).toBeGreaterThan(5);
  });
});

const ALPHABET = [
  "a",
  "Z",
  "0",
  " ",
  "  ",
  "\t",
  "\n",
  "\r",
  "'",
  '"',
  "\\",
  "`",
  "$",
  "$(",
  ")",
  "${",
  "}",
  "{",
  ";",
  "&",
  "|",
  "<",
  ">",
  "<<",
  "#",
  "*",
  "?",
  "[",
  "~",
  "!",
  "%",
  "=",
  "-",
  "é",
  "🙂",
  "\u202e",
  "\u0001",
  "EOF",
];

function hostileValue(gen: Gen, canary: string): string {
  const roll = gen.int(12);
  if (roll === 0) return `$(touch ${canary})`;
  if (roll === 1) return `;touch ${canary};#`;
  if (roll === 2) return `\`touch ${canary}\``;
  if (roll === 3) return `'; touch ${canary}; '`;
  if (roll === 4) return `"; touch ${canary}; "`;
  if (roll === 5) return `\nEOF\ntouch ${canary}\n`;
  if (roll === 6) return "x".repeat(10_000);
  let value = "";
  for (let i = gen.int(12); i > 0; i--) value += gen.pick(ALPHABET);
  return value;
}

/** Templates in every accepted context, with what `sh -c` prints for a value. */
const CONTEXTS: Array<[string, (value: string) => string]> = [
  ["printf '<%s>' {x}", (v) => `<${v}>`],
  ["printf '<%s>' \"{x}\"", (v) => `<${v}>`],
  ["printf '<%s>' '{x}'", (v) => `<${v}>`],
  ["printf '<%s>' a{x}b\"c{x}\"'d{x}'", (v) => `<a${v}bc${v}d${v}>`],
  ["printf '<%s>' \"$(printf '%s.' {x})\"", (v) => `<${v}.>`],
  [
    "cat <<'EOF'\n{{not a placeholder}}\nEOF\nprintf '<%s>' {x} # {{x}}",
    (v) => `{not a placeholder}\n<${v}>`,
  ],
  ["X={x}; printf '<%s>' \"$X\"", (v) => `<${v}>`],
];

describe(`fuzz: hostile values through command templates (seed ${SEED})`, () => {
  it("arrive byte-exact in every accepted context and inject nothing", () => {
    const dir = tempDir();
    const canary = join(dir, "INJECTED");
    const gen = generator(SEED + 1);
    const values = Array.from({ length: 30 }, () => hostileValue(gen, canary));
    for (const [template, expected] of CONTEXTS) {
      const text = stringify({ command: template, exp: { combinations: [{ x: values }] } });
      const sweep = judge(dir, text, template);
      expect(sweep, template).not.toBeNull();
      const phase = sweep?.phases[0];
      if (!phase) continue;
      const tasks = [...expandPhase(phase)];
      expect(tasks).toHaveLength(values.length);
      for (const [index, task] of tasks.entries()) {
        const value = values[index] as string;
        const run = spawnSync("sh", ["-c", task.command], { encoding: "utf8", timeout: 10_000 });
        expect(run.stdout, `${template} with ${JSON.stringify(value)}\n${task.command}`).toBe(
          expected(value),
        );
      }
    }
    expect(existsSync(canary)).toBe(false);
  });

  it("a NUL in a value is refused at its field", () => {
    const dir = tempDir();
    const text = `command: echo {x}\nexp:\n  combinations:\n    - x: [ok, "a\\0b"]\n`;
    expect(judge(dir, text, "NUL")).toBeNull();
    expect(() => checkSweep([{ file: join(dir, "sweep.yaml"), text }])).toThrow(
      /:4:\d+: exp\.combinations\[0\]\.x\[1\]: /,
    );
  });

  it("random templates from shell fragments are refused with a place or inject nothing", () => {
    const dir = tempDir();
    const canary = join(dir, "INJECTED");
    const gen = generator(SEED + 2);
    const FRAGMENTS = [
      "printf '<%s>' ",
      "echo ",
      " ",
      "{x}",
      "{x}",
      "{x}",
      "'",
      '"',
      "\\",
      "#",
      "\n",
      "<<EOF\n",
      "<<'EOF'\n",
      "<<-EOF\n",
      "\nEOF\n",
      "`",
      "$(",
      ")",
      "${A:-",
      "}",
      "$((",
      "))",
      ";",
      "$'",
      "(",
      "case a in a) ",
      ";; esac",
      "{{",
      "}}",
      "a",
    ];
    const values = [
      `$(touch ${canary})`,
      `;touch ${canary};#`,
      `\`touch ${canary}\``,
      `'; touch ${canary}; '`,
      `"; touch ${canary}; "`,
      `\nEOF\ntouch ${canary}\n`,
      `\\'; touch ${canary}; #`,
      `1 )); touch ${canary}; (( 1`,
    ];
    let accepted = 0;
    for (let n = 0; n < 120; n++) {
      let template = "";
      for (let i = 1 + gen.int(8); i > 0; i--) template += gen.pick(FRAGMENTS);
      if (!template.includes("{x}")) template += " {x}";
      const text = stringify({ command: template, exp: { combinations: [{ x: values }] } });
      const sweep = judge(dir, text, `template ${JSON.stringify(template)}`);
      const phase = sweep?.phases[0];
      if (!phase) continue;
      accepted++;
      for (const task of expandPhase(phase)) {
        spawnSync("sh", ["-c", task.command], { stdio: "ignore", timeout: 5000 });
        if (existsSync(canary))
          throw new Error(`seed ${SEED}: injected through ${JSON.stringify(template)}: ${task.command}`);
      }
    }
    expect(accepted).toBeGreaterThan(10);
  });
});
