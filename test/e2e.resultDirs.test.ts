/**
 * A results dir that cannot be written, through the built CLI: `run` and `serve
 * --exit-when-done` exit 1 naming the dir and why, the other dir gets its rows, `status` (text
 * and --json) shows the failing dir from another process, and the next `run` writes the owed
 * rows once the cause is fixed. Run `npm run build` first (the CLI runs dist/).
 */
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type CliResult, runCli, startCli, tempDir, watch, writeFile } from "./helpers/cli.js";
import { csvRecords } from "./helpers/resultsLedger.js";

const TASK_PY = `import json, os, sys
json.dump({"loss": int(sys.argv[1]) / 10}, open(os.environ["LABSWEEP_RESULT_FILE"], "w"))
`;
// x = 1, 2 write to out/a; x = 3 to out/b.
const SWEEP = `command: python3 task.py {x}
a:
  output_dir: out/a
  combinations:
    - x: [1, 2]
b:
  output_dir: out/b
  combinations:
    - x: [3]
`;
const CLEAN_ENV = {
  LABSWEEP_AGENT_TOKEN: "",
  LABSWEEP_VIEWER_TOKEN: "",
  LABSWEEP_TOKEN: "",
  LABSWEEP_STORE: "",
};

/** A project whose out/a holds a malformed final_results.csv. */
function project(): { dir: string; csvA: string } {
  const dir = tempDir();
  writeFile(dir, "task.py", TASK_PY);
  writeFile(dir, "sweep.yaml", SWEEP);
  mkdirSync(join(dir, "out", "a"), { recursive: true });
  const csvA = join(dir, "out", "a", "final_results.csv");
  writeFileSync(csvA, 'phase,x,loss\na,"1"x,2\n');
  return { dir, csvA };
}

function expectCode(result: CliResult, code: number): void {
  expect(result.code, `exited ${result.code}:\n${result.stderr}`).toBe(code);
}

describe("a results dir that cannot be written", () => {
  it("makes run exit 1 naming it, shows in status, and is written by the next run once fixed", async () => {
    const { dir, csvA } = project();
    const sweep = join(dir, "sweep.yaml");
    const run = await runCli(["run", sweep, "--no-dashboard", "--slots", "2"], { cwd: dir, env: CLEAN_ENV });
    expectCode(run, 1);
    const dirA = join(dir, "out", "a");
    expect(run.stderr).toContain(`2 result rows not written to ${dirA}: malformed CSV file ${csvA}`);
    expect(run.stderr).toContain("3 succeeded, 0 failed");
    expect(csvRecords(join(dir, "out", "b", "final_results.csv")).map((record) => record.x)).toEqual(["3"]);

    const status = await runCli(["status", sweep], { cwd: dir, env: CLEAN_ENV });
    expectCode(status, 0);
    expect(status.stdout).toMatch(
      new RegExp(
        `cannot write results to ${dirA} \\(2 rows owed; failing since [^)]+\\): malformed CSV file`,
      ),
    );
    const json = await runCli(["status", sweep, "--json"], { cwd: dir, env: CLEAN_ENV });
    const { resultErrors } = JSON.parse(json.stdout) as {
      resultErrors: Array<{ outputDir: string; error: string; owedRows: number }>;
    };
    expect(resultErrors).toEqual([
      expect.objectContaining({ outputDir: dirA, owedRows: 2, error: expect.stringContaining(csvA) }),
    ]);

    rmSync(csvA);
    const again = await runCli(["run", sweep, "--no-dashboard"], { cwd: dir, env: CLEAN_ENV });
    expectCode(again, 0);
    expect(csvRecords(csvA).map((record) => [record.x, record.loss])).toEqual([
      ["1", "0.1"],
      ["2", "0.2"],
    ]);
    const after = await runCli(["status", sweep, "--json"], { cwd: dir, env: CLEAN_ENV });
    expect((JSON.parse(after.stdout) as { resultErrors: unknown[] }).resultErrors).toEqual([]);
  });

  it("makes serve --exit-when-done exit 1 naming it once every task has finished", async () => {
    const { dir, csvA } = project();
    const served = watch(
      startCli(["serve", join(dir, "sweep.yaml"), "--port", "0", "--exit-when-done"], {
        cwd: dir,
        env: CLEAN_ENV,
      }),
    );
    await served.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
    const url = (/^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(served.output()) as RegExpExecArray)[1] as string;
    const token = (
      await runCli(["token", "--state", join(dir, ".labsweep")], { env: CLEAN_ENV })
    ).stdout.trim();
    const agent = watch(
      startCli(
        ["agent", "--server", url, `--token=${token}`, "--state", join(dir, "agent"), "--slots", "2"],
        {
          cwd: dir,
          env: CLEAN_ENV,
        },
      ),
    );
    const [servedResult, agentResult] = await Promise.all([served.result, agent.result]);
    expectCode(agentResult, 0);
    expectCode(servedResult, 1);
    expect(servedResult.stderr).toContain(
      `2 result rows not written to ${join(dir, "out", "a")}: malformed CSV file ${csvA}`,
    );
    expect(csvRecords(join(dir, "out", "b", "final_results.csv")).map((record) => record.x)).toEqual(["3"]);
  });
});
