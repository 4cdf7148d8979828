/** The launcher and setpriv are looked up on PATH, not started to see whether they run. */
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import { describe, expect, it } from "vitest";
import { launcherPython, onPath } from "../src/agent/onPath.js";
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

describe("launcherPython", () => {
  it("skips a version manager's shim (a script) for a real python3 later on PATH, else takes the shim", () => {
    const root = tempDir();
    const [shims, bin] = [join(root, "shims"), join(root, "bin")];
    mkdirSync(shims);
    mkdirSync(bin);
    writeFileSync(join(shims, "python3"), '#!/usr/bin/env bash\nexec pyenv exec python3 "$@"\n');
    chmodSync(join(shims, "python3"), 0o755);
    expect(launcherPython([shims, bin].join(delimiter))).toBe(join(shims, "python3"));
    // A program: anything but a `#!` script (here a copy of the first bytes of an ELF file).
    writeFileSync(join(bin, "python3"), Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]));
    chmodSync(join(bin, "python3"), 0o755);
    expect(launcherPython([shims, bin].join(delimiter))).toBe(join(bin, "python3"));
    expect(launcherPython(join(root, "nowhere"))).toBeNull();
  });
});
