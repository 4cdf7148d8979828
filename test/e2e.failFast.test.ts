/**
 * Fail fast (a phase's `max_failures`), end to end through `labsweep run`: a phase whose first
 * attempts all fail with one error line stops early; one whose tasks keep failing stops at the
 * count (or the fraction); its pending tasks are held, phases after it blocked, the run ends
 * (exit 1) and `labsweep retry --failed --phase P` reopens it. Real CLI (`npm run build` first).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runCli, tempDir, writeFile } from "./helpers/cli.js";

interface PhaseJson {
  name: string;
  state: string;
  reason: string | null;
  failed: number;
  blocked: number;
  succeeded: number;
}

async function phases(dir: string): Promise<PhaseJson[]> {
  const result = await runCli(["status", "sweep.yaml", "--json"], { cwd: dir });
  expect(result.code, result.stderr).toBe(0);
  return (JSON.parse(result.stdout) as { phases: PhaseJson[] }).phases;
}

/** How many times the tasks ran: each appends a line to ran.txt. */
const runs = (dir: string) => readFileSync(join(dir, "ran.txt"), "utf8").split("\n").filter(Boolean).length;

describe("max_failures", () => {
  it("stops a phase whose first attempts all fail alike, and retry reopens it", async () => {
    const dir = tempDir();
    writeFile(
      dir,
      "task.sh",
      'echo "$1" >> ran.txt; sleep 0.2; echo "ModuleNotFoundError: No module named \'torchvison\'" >&2; exit 1\n',
    );
    writeFile(
      dir,
      "sweep.yaml",
      [
        "command: sh task.sh {x}",
        // Retried failures: three attempts fail before any task has failed for good three times.
        "retries: 2",
        "backoff: 50ms",
        "train:",
        "  max_failures: 3",
        "  combinations:",
        "    - x: [1, 2, 3, 4, 5, 6, 7, 8]",
        "eval:",
        "  after: [train]",
        "  command: 'true'",
        "  combinations:",
        "    - y: [1]",
        "",
      ].join("\n"),
    );
    const result = await runCli(["run", "sweep.yaml", "--slots", "1", "--no-dashboard"], { cwd: dir });
    expect(result.code).toBe(1);
    // Three attempts, and at most those already handed out (leased ahead) when the third failed.
    expect(runs(dir)).toBeGreaterThanOrEqual(3);
    expect(runs(dir)).toBeLessThanOrEqual(5);
    const [train, evaluation] = await phases(dir);
    expect(train).toMatchObject({ name: "train", state: "stopped" });
    expect(train?.reason).toContain(
      "its first 3 attempts all failed with \"ModuleNotFoundError: No module named 'torchvison'\"",
    );
    expect(train?.blocked).toBeGreaterThanOrEqual(3);
    expect(evaluation).toMatchObject({ name: "eval", state: "blocked", reason: "phase train is stopped" });
    const status = await runCli(["status", "sweep.yaml"], { cwd: dir });
    expect(status.stdout).toMatch(/train: .*\[stopped\].*labsweep retry --failed --phase train/);

    const retried = await runCli(["retry", "sweep.yaml", "--failed", "--phase", "train"], { cwd: dir });
    expect(retried.code, retried.stderr).toBe(0);
    const [reopened] = await phases(dir);
    expect(reopened).toMatchObject({ name: "train", state: "open", reason: null, failed: 0, blocked: 0 });
  }, 60_000);

  it("stops at the count of tasks failed for good, and at a fraction of the phase's tasks", async () => {
    for (const [limit, expected] of [
      ["2", 2],
      ["0.5", 3],
    ] as const) {
      const dir = tempDir();
      // Each task fails with its own line, so only the count stops the phase.
      writeFile(
        dir,
        "sweep.yaml",
        `command: echo {x} >> ran.txt; sleep 0.2; echo "bad value {x}" >&2; exit 1\nretries: 0\nmax_failures: ${limit}\nscan:\n  combinations:\n    - x: [1, 2, 3, 4, 5, 6]\n`,
      );
      const result = await runCli(["run", "sweep.yaml", "--slots", "1", "--no-dashboard"], { cwd: dir });
      expect(result.code).toBe(1);
      const [scan] = await phases(dir);
      expect(scan?.state).toBe("stopped");
      expect(scan?.failed).toBeGreaterThanOrEqual(expected);
      expect(scan?.reason).toContain(
        `stopped (max_failures ${limit}): ${expected} of its tasks failed for good`,
      );
      // Those already handed out (leased ahead) when it stopped still ran.
      expect(runs(dir)).toBeLessThanOrEqual(expected + 2);
    }
  }, 60_000);

  it("lets a phase with successes run on past repeated failures of one line below the count", async () => {
    const dir = tempDir();
    writeFile(
      dir,
      "sweep.yaml",
      'command: if [ {x} -le 2 ]; then exit 0; fi; echo "flaky" >&2; exit 1\nretries: 0\nmax_failures: 3\nmixed:\n  combinations:\n    - x: [1, 2, 3, 4]\n',
    );
    const result = await runCli(["run", "sweep.yaml", "--slots", "1", "--no-dashboard"], { cwd: dir });
    expect(result.code).toBe(1);
    const [mixed] = await phases(dir);
    expect(mixed).toMatchObject({ state: "open", succeeded: 2, failed: 2 });
  }, 60_000);

  it("refuses a max_failures that is neither a count nor a fraction, naming file:line", async () => {
    for (const value of ["0", "1.5", "-1", "many"]) {
      const dir = tempDir();
      writeFile(
        dir,
        "sweep.yaml",
        `command: 'true'\ntrain:\n  max_failures: ${value}\n  combinations:\n    - x: [1]\n`,
      );
      const result = await runCli(["plan", "sweep.yaml"], { cwd: dir });
      expect(result.code, value).toBe(2);
      expect(result.stderr).toMatch(/sweep\.yaml:3.*max_failures/);
    }
  });
});
