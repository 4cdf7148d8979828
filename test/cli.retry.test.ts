/**
 * `labsweep retry`: an unknown --phase is named (exit 2, with the phases and a did-you-mean), and
 * a phase a failed gate blocked loses that stale reason: it is judged again at once. Real CLI
 * (`npm run build` first), real SQLite ledger.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runCli, tempDir, writeFile } from "./helpers/cli.js";

// train x 2 fails while the file `fail` exists; eval waits for every train task to succeed.
const SWEEP = `command: sh task.sh {x}
retries: 0
train:
  combinations:
    - x: [1, 2, 3]
eval:
  after: [train]
  combinations:
    - x: [11]
`;

function sweep(): { dir: string; config: string } {
  const dir = tempDir();
  writeFile(dir, "task.sh", 'if [ "$1" = 2 ] && [ -e fail ]; then exit 3; fi\n');
  writeFile(dir, "fail", "");
  return { dir, config: writeFile(dir, "sweep.yaml", SWEEP) };
}

interface Phase {
  name: string;
  state: string;
  reason: string | null;
}

async function phases(dir: string, config: string): Promise<Phase[]> {
  const result = await runCli(["status", config, "--json"], { cwd: dir });
  expect(result.code, result.stderr).toBe(0);
  return (JSON.parse(result.stdout) as { phases: Phase[] }).phases;
}

describe("retry", () => {
  it("names an unknown phase, lists the phases and guesses the one meant", async () => {
    const { dir, config } = sweep();
    expect((await runCli(["run", config, "--no-dashboard"], { cwd: dir })).code).toBe(1);
    const nope = await runCli(["retry", config, "--failed", "--phase", "nope"], { cwd: dir });
    expect(nope.code).toBe(2);
    expect(nope.stderr).toContain("unknown phase nope (phases: train, eval)");
    expect(nope.stdout).toBe("");
    const typo = await runCli(["retry", config, "--failed", "--phase", "trian"], { cwd: dir });
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain('did you mean "train"?');
    // Nothing was retried.
    expect((await phases(dir, config)).find((phase) => phase.name === "eval")?.state).toBe("blocked");
  });

  it("clears a blocked phase's gate reason and judges it again", async () => {
    const { dir, config } = sweep();
    expect((await runCli(["run", config, "--no-dashboard"], { cwd: dir })).code).toBe(1);
    const before = (await phases(dir, config)).find((phase) => phase.name === "eval");
    expect(before).toMatchObject({
      state: "blocked",
      reason: expect.stringMatching(/gate all_succeeded failed/),
    });

    const retried = await runCli(["retry", config, "--failed", "--phase", "train"], { cwd: dir });
    expect(retried.code, retried.stderr).toBe(0);
    expect(retried.stdout).toMatch(/^1 failed task will run again/);
    const after = (await phases(dir, config)).find((phase) => phase.name === "eval");
    expect(after).toEqual({ ...after, state: "waiting", reason: "waiting for train (2/3 settled)" });
    const text = await runCli(["status", config], { cwd: dir });
    expect(text.stdout).not.toMatch(/gate all_succeeded failed/);

    rmSync(join(dir, "fail"));
    const again = await runCli(["run", config, "--no-dashboard"], { cwd: dir });
    expect(again.code, again.stderr).toBe(0);
    expect((await phases(dir, config)).find((phase) => phase.name === "eval")).toMatchObject({
      state: "open",
      reason: null,
    });
  });
});
