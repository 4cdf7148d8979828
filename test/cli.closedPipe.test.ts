/**
 * `labsweep status … | head -1`: a reader that goes away must not make the CLI die with an EPIPE
 * stack trace. Real CLI (`npm run build` first), real pipe.
 */
import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { CLI, runCli, tempDir, writeFile } from "./helpers/cli.js";

describe("stdout closed by its reader", () => {
  it("status ends quietly when the reader closes after the first line", async () => {
    const dir = tempDir();
    const config = writeFile(
      dir,
      "sweep.yaml",
      "command: 'true'\na:\n  combinations:\n    - x: [1, 2, 3]\nb:\n  combinations:\n    - y: [1, 2]\n",
    );
    const ran = await runCli(["run", config, "--no-dashboard"], { cwd: dir });
    expect(ran.code, ran.stderr).toBe(0);
    for (let round = 0; round < 3; round++) {
      const child = spawn(process.execPath, [CLI, "status", config], {
        cwd: dir,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stderr = "";
      child.stderr.on("data", (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      // The reader is gone before status writes anything, so every write meets a closed pipe
      // (head -1 closing after a line is the same, but racing the writer).
      child.stdout.destroy();
      const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
      expect(stderr).not.toMatch(/EPIPE|Error| {4}at /);
      expect(code).toBe(0);
    }
  });

  it("a shell pipeline into head -1 prints one line and no stack trace", async () => {
    const dir = tempDir();
    const config = writeFile(dir, "sweep.yaml", "command: 'true'\na:\n  combinations:\n    - x: [1, 2]\n");
    expect((await runCli(["run", config, "--no-dashboard"], { cwd: dir })).code).toBe(0);
    const child = spawn(
      "sh",
      ["-c", `"${process.execPath}" "${CLI}" status "${config}" | head -1; echo "rc=$?" >&2`],
      { cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    await new Promise((resolve) => child.once("close", resolve));
    expect(stdout.trim().split("\n")).toHaveLength(1);
    expect(stderr).not.toMatch(/EPIPE| {4}at /);
  });
});
