/**
 * Command templates against hostile values: every accepted template is rendered and run with a
 * real `sh -c`, which must print each value byte-exact and run nothing the value says; every
 * template with a placeholder no quoting can protect (after a backslash, in a comment, in a
 * here-document, inside backticks, $'…', $((…)), or after constructs the lexer cannot follow)
 * is a ConfigError at the placeholder's file:line:column.
 */
import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../src/sweep/configError.js";
import { expandPhase } from "../src/sweep/expand.js";
import { parseSweepFile } from "../src/sweep/loadSweep.js";

const FILE = "/sweeps/exp/sweep.yaml";

const HOSTILE = [
  "a;echo INJECTED;#",
  "$(echo INJECTED)",
  "`echo INJECTED`",
  "'; echo INJECTED; '",
  '"; echo INJECTED; "',
  "x\\'y",
  "\\",
  "\\\\$(echo INJECTED)",
  // biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax, not a JS template
  "${HOME}",
  "*",
  "-n",
  "",
  "a b  c",
  "line1\nline2",
  "EOF\necho INJECTED",
  "A=1",
  "é🙂 ünï",
  "}{x}{",
  "#not a comment",
];

/** Renders `command` with `x` set to `value` through a real config, and runs it with sh -c. */
function runWith(command: string, value: string): string {
  const yaml = `exp:\n  command: ${JSON.stringify(command)}\n  defaults: {x: ${JSON.stringify(value)}}\n`;
  const [task] = [...expandPhase(parseSweepFile(FILE, yaml).phases[0] as never)];
  return execFileSync("sh", ["-c", task?.command as string], { encoding: "utf8" });
}

describe("accepted templates keep every value byte-exact and run nothing it says", () => {
  const ACCEPTED: Array<[string, string, (value: string) => string]> = [
    ["unquoted word", "printf '%s|' {x}", (v) => `${v}|`],
    ["inside double quotes", "printf '%s|' \"{x}\"", (v) => `${v}|`],
    ["inside single quotes", "printf '%s|' '{x}'", (v) => `${v}|`],
    ["mid double-quoted text", "printf '%s|' \"pre {x} post\"", (v) => `pre ${v} post|`],
    ["mid single-quoted text", "printf '%s|' 'pre {x} post'", (v) => `pre ${v} post|`],
    ["glued to words", "printf '%s|' pre{x}post", (v) => `pre${v}post|`],
    ["an assignment", "X={x}; printf '%s|' \"$X\"", (v) => `${v}|`],
    ["inside $(…)", "printf '%s|' \"$(printf '%s.' {x})\"", (v) => `${v}.|`],
    ["double quotes in $(…) in double quotes", "printf '%s|' \"$(printf '%s.' \"{x}\")\"", (v) => `${v}.|`],
    ["# inside a word is no comment", "printf '%s|' a#{x}", (v) => `a#${v}|`],
    ["after a comment line", "# {{x}} is fine here\nprintf '%s|' {x}", (v) => `${v}|`],
    ["after a here-document", "cat <<'EOF'\nbody\nEOF\nprintf '%s|' {x}", (v) => `body\n${v}|`],
    [
      "after a <<- here-document",
      "cat <<-END\n\tbody $((1+1))\n\tEND\nprintf '%s|' {x}",
      (v) => `body 2\n${v}|`,
    ],
    ["a quoted ) inside $(…)", "printf '%s|' \"$(printf '%s' ')' {x})\"", (v) => `)${v}|`],
    ["on a here-document's first line", "printf '%s|' {x} <<EOF\nignored {{x}}\nEOF", (v) => `${v}|`],
    ["after an escaped quote", "printf '%s|' \\' {x}", (v) => `'|${v}|`],
    // biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax, not a JS template
    ["after ${VAR}", "A=1; printf '%s|' \"${A}\" {x}", (v) => `1|${v}|`],
  ];
  it.each(ACCEPTED)("%s", (_what, command, expected) => {
    for (const value of HOSTILE) {
      expect(runWith(command, value), `value ${JSON.stringify(value)}`).toBe(expected(value));
    }
  });
});

function errorOf(yaml: string): ConfigError {
  try {
    parseSweepFile(FILE, yaml);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error(`accepted:\n${yaml}`);
}

describe("placeholders no quoting can protect are config errors at file:line:column", () => {
  const REJECTED: Array<[string, string, number, number, string]> = [
    [
      "after a backslash",
      "exp:\n  command: echo \\{x}\n  defaults: {x: 1}\n",
      2,
      18,
      "right after a backslash",
    ],
    [
      "after a backslash in double quotes",
      'exp:\n  command: echo "a\\{x}"\n  defaults: {x: 1}\n',
      2,
      20,
      "right after a backslash",
    ],
    ["in a comment", "exp:\n  command: 'echo hi # {x}'\n  defaults: {x: 1}\n", 2, 23, "in a # comment"],
    [
      "in a here-document's body (block scalar)",
      "exp:\n  command: |\n    cat <<EOF\n    hello {x}\n    EOF\n  defaults: {x: 1}\n",
      4,
      11,
      "here-document's body",
    ],
    [
      "in a quoted here-document's body",
      "exp:\n  command: |-\n    cat <<'EOF'\n      {x}\n    EOF\n  defaults: {x: 1}\n",
      4,
      7,
      "here-document's body",
    ],
    [
      "in a here-document inside $(…)",
      "exp:\n  command: |\n    echo $(cat <<EOF\n    {x}\n    EOF\n    )\n  defaults: {x: 1}\n",
      4,
      5,
      "here-document's body",
    ],
    [
      "as a here-document's delimiter",
      "exp:\n  command: cat <<{x}\n  defaults: {x: 1}\n",
      2,
      18,
      "delimiter",
    ],
    ["inside backticks", "exp:\n  command: echo `echo {x}`\n  defaults: {x: 1}\n", 2, 23, "backticks"],
    [
      "inside backticks in double quotes",
      'exp:\n  command: echo "`echo {x}`"\n  defaults: {x: 1}\n',
      2,
      24,
      "backticks",
    ],
    ["inside $'…'", "exp:\n  command: echo $'a{x}'\n  defaults: {x: 1}\n", 2, 20, "$'…'"],
    ["inside $((…))", "exp:\n  command: echo $(( {x} + 1 ))\n  defaults: {x: 1}\n", 2, 21, "$((…))"],
    [
      "after a case inside $(…)",
      "exp:\n  command: 'echo $(case a in a) echo;; esac) {x}'\n  defaults: {x: 1}\n",
      2,
      46,
      "case statement",
    ],
    [
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax, not a JS template
      "after quotes inside ${…}",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax, not a JS template
      'exp:\n  command: echo ${A:-"x"} {x}\n  defaults: {x: 1}\n',
      2,
      27,
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax, not a JS template
      "quotes inside ${…}",
    ],
    [
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax, not a JS template
      "inside ${…}, where it would stay literal",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax, not a JS template
      "exp:\n  command: echo ${OUT:-{x}}\n  defaults: {x: 1}\n",
      2,
      24,
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax, not a JS template
      "inside ${…}, which is the shell's",
    ],
    [
      "the second of two, in a file-level command",
      "command: printf %s {x} \\{x}\nexp:\n  defaults: {x: 1}\n",
      1,
      25,
      "right after a backslash",
    ],
  ];
  it.each(REJECTED)("%s", (_what, yaml, line, column, says) => {
    const error = errorOf(yaml);
    expect(error.message).toMatch(
      new RegExp(`^${FILE}:${line}:${column}: (exp\\.)?command: placeholder \\{x\\} is `),
    );
    expect(error.message).toContain(says);
    expect(error.place).toEqual({ file: FILE, line, column });
  });

  it("the original injection no longer runs: \\{x} is refused before any shell sees it", () => {
    expect(() => runWith("echo \\{x}", "a;echo INJECTED;#")).toThrow(ConfigError);
  });

  it("a command from --command is placed at the phase, with the character", () => {
    const error = (() => {
      try {
        parseSweepFile(FILE, "exp:\n  defaults: {x: 1}\n", { defaultCommand: "echo # {x}" });
      } catch (caught) {
        return caught as ConfigError;
      }
      throw new Error("accepted");
    })();
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toMatch(
      /^\/sweeps\/exp\/sweep\.yaml:1:1: exp: placeholder \{x\} is in a # comment.*character 8 of --command/,
    );
  });

  it("a value with a NUL is refused at its field: no command argument can hold it", () => {
    const error = errorOf('exp:\n  command: echo {x}\n  combinations:\n    - x: [ok, "a\\0b"]\n');
    expect(error.message).toMatch(
      /^\/sweeps\/exp\/sweep\.yaml:4:\d+: exp\.combinations\[0\]\.x\[1\]: the value contains a NUL/,
    );
  });
});
