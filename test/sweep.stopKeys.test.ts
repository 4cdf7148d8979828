/**
 * checkpoint_root, stop_signal, stop_grace and hang_timeout: file-level or per phase like the
 * other run-policy keys; bad values are ConfigErrors naming file:line and the key.
 */
import { describe, expect, it } from "vitest";
import type { ConfigError } from "../src/sweep/configError.js";
import { parseSweepFile } from "../src/sweep/loadSweep.js";
import { configErrorOf } from "./helpers/configErrors.js";

const FILE = "/sweeps/exp/sweep.yaml";

function errorOf(text: string): ConfigError {
  return configErrorOf(FILE, text);
}

describe("stop and checkpoint keys", () => {
  it("are read from the file and overridden per phase; checkpoint_root is relative to the config's dir", () => {
    const { phases } = parseSweepFile(
      FILE,
      [
        "command: run",
        "checkpoint_root: ../ckpt",
        "stop_grace: 45s",
        "a: {}",
        "b:",
        "  checkpoint_root: /shared/ckpt",
        "  stop_signal: USR1",
        "  stop_grace: 5",
        "  hang_timeout: 10m",
        "",
      ].join("\n"),
    );
    expect(phases[0]?.policy).toMatchObject({ checkpointRoot: "/sweeps/ckpt", stopGraceMs: 45_000 });
    expect(phases[0]?.policy.stopSignal).toBeUndefined();
    expect(phases[0]?.policy.hangTimeoutMs).toBeUndefined();
    expect(phases[1]?.policy).toMatchObject({
      checkpointRoot: "/shared/ckpt",
      stopSignal: "SIGUSR1",
      stopGraceMs: 5000,
      hangTimeoutMs: 600_000,
    });
  });

  it("leave a policy as it was when none is set", () => {
    const { phases } = parseSweepFile(FILE, "command: run\na: {}\n");
    const policy = phases[0]?.policy as object;
    for (const key of ["checkpointRoot", "stopSignal", "stopGraceMs", "hangTimeoutMs"])
      expect(Object.keys(policy)).not.toContain(key);
  });

  it("accept signal names with or without SIG, in any case", () => {
    for (const [written, name] of [
      ["SIGTERM", "SIGTERM"],
      ["term", "SIGTERM"],
      ["SIGINT", "SIGINT"],
      ["usr2", "SIGUSR2"],
      ["SIGHUP", "SIGHUP"],
      ["QUIT", "SIGQUIT"],
    ]) {
      const { phases } = parseSweepFile(FILE, `command: run\na:\n  stop_signal: ${written}\n`);
      expect(phases[0]?.policy.stopSignal).toBe(name);
    }
  });

  it("refuse SIGKILL and SIGSTOP, saying why, at file:line", () => {
    for (const signal of ["SIGKILL", "KILL", "SIGSTOP"]) {
      const error = errorOf(`command: run\na:\n  stop_signal: ${signal}\n`);
      expect(error.message).toMatch(/^\/sweeps\/exp\/sweep\.yaml:3:\d+: /);
      expect(error.keyPath).toBe("a.stop_signal");
      expect(error.message).toContain("cannot be caught");
      expect(error.message).toContain("SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGHUP, SIGQUIT");
    }
  });

  it("refuse unknown signals and non-strings at file:line", () => {
    const unknown = errorOf("command: run\nstop_signal: SIGFOO\na: {}\n");
    expect(unknown.message).toMatch(/^\/sweeps\/exp\/sweep\.yaml:2:\d+: /);
    expect(unknown.keyPath).toBe("stop_signal");
    expect(unknown.message).toContain('"SIGFOO" is not a signal');
    const number = errorOf("command: run\na:\n  stop_signal: 15\n");
    expect(number.place?.line).toBe(3);
    expect(number.keyPath).toBe("a.stop_signal");
  });

  it("refuse bad and zero durations for stop_grace and hang_timeout at file:line", () => {
    const grace = errorOf("command: run\na:\n  stop_grace: a while\n");
    expect(grace.message).toMatch(/^\/sweeps\/exp\/sweep\.yaml:3:\d+: /);
    expect(grace.keyPath).toBe("a.stop_grace");
    expect(grace.message).toContain("expected a duration");
    const zeroGrace = errorOf("command: run\nstop_grace: 0\na: {}\n");
    expect(zeroGrace.place?.line).toBe(2);
    expect(zeroGrace.message).toContain("must be longer than 0");
    const hang = errorOf("command: run\na:\n  combinations:\n    - x: [1]\n  hang_timeout: 10 minutes\n");
    expect(hang.place?.line).toBe(5);
    expect(hang.keyPath).toBe("a.hang_timeout");
    const zeroHang = errorOf("command: run\na:\n  hang_timeout: 0s\n");
    expect(zeroHang.message).toContain("leave hang_timeout out");
    const root = errorOf("command: run\na:\n  checkpoint_root: ''\n");
    expect(root.keyPath).toBe("a.checkpoint_root");
  });

  it("a misspelt key gets a did-you-mean", () => {
    const error = errorOf("command: run\na:\n  stop_signl: USR1\n");
    expect(error.message).toContain('did you mean "stop_signal"');
  });
});
