/** The launcher and setpriv are looked up on PATH, not started to see whether they run. */
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import { describe, expect, it } from "vitest";
import { onPath } from "../src/agent/onPath.js";
import { tempDir } from "./helpers/cli.js";

describe("onPath", () => {
  it("finds an executable in any PATH dir, and not a file that is not executable or a missing name", () => {
    const root = tempDir();
    const [first, second] = [join(root, "a"), join(root, "b")];
    mkdirSync(first);
    mkdirSync(second);
    writeFileSync(join(second, "tool"), "#!/bin/sh\n");
    chmodSync(join(second, "tool"), 0o755);
    writeFileSync(join(first, "plain"), "not a program");
    chmodSync(join(first, "plain"), 0o644);
    const path = ["", first, second].join(delimiter);
    expect(onPath("tool", path)).toBe(true);
    expect(onPath("plain", path)).toBe(false);
    expect(onPath("missing", path)).toBe(false);
    expect(onPath("tool", first)).toBe(false);
    expect(onPath("sh")).toBe(true);
  });
});
