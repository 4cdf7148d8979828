import { describe, expect, it } from "vitest";
import { parseSweepFile } from "../src/sweep/loadSweep.js";
import { describeEntry, redactUrl } from "../src/sweep/notifySetting.js";
import { configErrorOf } from "./helpers/configErrors.js";

const FILE = "/sweeps/exp/sweep.yaml";
const SECRET = "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX";

/** A config with one `notify:` entry whose lines (after `- `) are `entry`; the entry starts on line 3. */
const withEntry = (entry: string): string =>
  `command: sh -c 'exit 0'\nnotify:\n  - ${entry.split("\n").join("\n    ")}\nexp: {}\n`;

describe("notify: entries", () => {
  it("reads each event, failure_rate's threshold, and the entry's place", () => {
    const text = `command: run\nnotify:\n  - on: task_failed\n    webhook: ${SECRET}\n  - on: {failure_rate: 0.2}\n    command: echo "$LABSWEEP_EVENT"\nexp: {}\n`;
    const file = parseSweepFile(FILE, text);
    expect(file.notify).toEqual([
      { on: "task_failed", webhook: SECRET, file: FILE, line: 3, baseDir: "/sweeps/exp" },
      {
        on: "failure_rate",
        threshold: 0.2,
        minFinished: 10,
        command: 'echo "$LABSWEEP_EVENT"',
        file: FILE,
        line: 5,
        baseDir: "/sweeps/exp",
      },
    ]);
    expect(parseSweepFile(FILE, "command: run\nexp: {}\n").notify).toBeUndefined();
  });

  it.each([
    [
      "an unknown event, with a did you mean",
      "on: task_faild\nwebhook: https://x/y",
      "notify[0].on",
      3,
      ['got "task_faild"', 'did you mean "task_failed"'],
    ],
    [
      "failure_rate written as a word",
      "on: failure_rate\ncommand: echo",
      "notify[0].on",
      3,
      ["{failure_rate: 0.2}"],
    ],
    [
      "failure_rate above 1",
      "on: {failure_rate: 20}\ncommand: echo",
      "notify[0].on.failure_rate",
      3,
      ["(0, 1]", "(0.2?)"],
    ],
    ["failure_rate of 0", "on: {failure_rate: 0}\ncommand: echo", "notify[0].on.failure_rate", 3, ["(0, 1]"]],
    [
      "a misspelt failure_rate",
      "on: {failure_rat: 0.5}\ncommand: echo",
      "notify[0].on.failure_rat",
      3,
      ['did you mean "failure_rate"'],
    ],
    [
      "both webhook and command",
      "on: agent_lost\nwebhook: https://x/y\ncommand: echo",
      "notify[0]",
      3,
      ["exactly one of webhook and command; got both"],
    ],
    [
      "neither webhook nor command",
      "on: agent_lost",
      "notify[0]",
      3,
      ["exactly one of webhook and command; got neither"],
    ],
    ["no on", "command: echo", "notify[0]", 3, ["needs `on:`"]],
    [
      "an unknown key",
      "on: agent_lost\ncomand: echo",
      "notify[0].comand",
      4,
      ['did you mean "command"', "Allowed keys: on"],
    ],
    [
      "an ftp URL",
      "on: sweep_finished\nwebhook: ftp://files.example/token123",
      "notify[0].webhook",
      4,
      ["only http and https"],
    ],
    [
      "not a URL",
      "on: sweep_finished\nwebhook: hooks.slack.com/token123",
      "notify[0].webhook",
      4,
      ["is not a URL"],
    ],
    ["an empty command", "on: sweep_finished\ncommand: ''", "notify[0].command", 4, ["is empty"]],
  ])("rejects %s at file:line", (_what, entry, keyPath, line, says) => {
    const error = configErrorOf(FILE, withEntry(entry));
    expect(error.message.startsWith(`${FILE}:${line}:`), error.message).toBe(true);
    expect(error.keyPath).toBe(keyPath);
    for (const text of says) expect(error.message).toContain(text);
    // A bad URL's token never reaches the message.
    expect(error.message).not.toContain("token123");
  });

  it("rejects a notify that is not a list", () => {
    const error = configErrorOf(FILE, "command: run\nnotify: https://x\nexp: {}\n");
    expect(error.message).toMatch(/^\/sweeps\/exp\/sweep\.yaml:2:\d+: notify: expected a list of entries/);
  });
});

describe("webhook URLs are shown redacted", () => {
  it.each([
    [SECRET, "https://hooks.slack.com/…"],
    ["https://user:pw@ntfy.sh/topic?auth=abc", "https://ntfy.sh/…"],
    ["http://127.0.0.1:8080/", "http://127.0.0.1:8080"],
    ["http://127.0.0.1:8080/?k=1", "http://127.0.0.1:8080/…"],
  ])("%s → %s", (url, shown) => {
    expect(redactUrl(url)).toBe(shown);
  });

  it("names an entry by its place, never by its full URL", () => {
    const [entry] = parseSweepFile(FILE, withEntry(`on: task_failed\nwebhook: ${SECRET}`)).notify ?? [];
    expect(describeEntry(entry as never)).toBe(
      `notify entry ${FILE}:3 (on task_failed, webhook https://hooks.slack.com/…)`,
    );
  });
});
