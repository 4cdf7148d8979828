import { describe, expect, it } from "vitest";
import type { ConfigError } from "../src/sweep/configError.js";
import { parseSweepFile } from "../src/sweep/loadSweep.js";
import { configErrorOf } from "./helpers/configErrors.js";

const FILE = "/sweeps/exp/sweep.yaml";

function errorOf(text: string): ConfigError {
  return configErrorOf(FILE, text);
}

describe("artifacts: and artifact_limit_mb", () => {
  it("a phase's globs replace the file's; the limit defaults to 1024 MB", () => {
    const file = parseSweepFile(
      FILE,
      'command: run\nartifacts: ["*.txt"]\nartifact_limit_mb: 5\na: {}\nb:\n  artifacts: ["plots/**", "model.pt"]\n  artifact_limit_mb: 0.5\nc:\n  artifacts: []\n',
    );
    const policy = (name: string) => file.phases.find((phase) => phase.name === name)?.policy;
    expect(policy("a")).toMatchObject({ artifacts: ["*.txt"], artifactLimitMb: 5 });
    expect(policy("b")).toMatchObject({ artifacts: ["plots/**", "model.pt"], artifactLimitMb: 0.5 });
    expect(policy("c")).toMatchObject({ artifacts: [], artifactLimitMb: 5 });
    const plain = parseSweepFile(FILE, "command: run\na: {}\n").phases[0]?.policy;
    expect(plain).toMatchObject({ artifacts: [], artifactLimitMb: 1024 });
  });

  it.each([
    ["/etc/passwd", "is absolute"],
    ["~/secrets", "is absolute"],
    ["../other/*.txt", "climbs out of the work dir"],
    ["plots/../../x", "climbs out of the work dir"],
    ["", "is empty"],
  ])("the glob %j is refused at file:line, naming the key", (glob, says) => {
    const error = errorOf(`command: run\nexp:\n  artifacts:\n    - "*.txt"\n    - ${JSON.stringify(glob)}\n`);
    expect(error.message.startsWith(`${FILE}:5:`), error.message).toBe(true);
    expect(error.keyPath).toBe("exp.artifacts[1]");
    expect(error.message).toContain(says);
  });

  it("a limit of 0 or a word is refused", () => {
    expect(errorOf("command: run\nexp:\n  artifact_limit_mb: 0\n").message).toMatch(/:3:.*artifact_limit_mb/);
    expect(errorOf("command: run\nartifact_limit_mb: lots\nexp: {}\n").message).toMatch(
      /:2:.*artifact_limit_mb/,
    );
  });
});
