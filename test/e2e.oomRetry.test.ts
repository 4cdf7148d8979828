/**
 * on_oom end to end, with a real python3 script that fails with PyTorch's CUDA out-of-memory
 * message above batch size 16: through `labsweep run`, and through `labsweep serve` with a real
 * `labsweep agent` on loopback (its own state dir), the task shrinks its batch and succeeds; the
 * CSV keeps the declared batch size and records the one used and the OOM retries. Without
 * on_oom the failure says out of memory in failed_experiments.csv and `status`. Run
 * `npm run build` first.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { describe, expect, it } from "vitest";
import { taskDetail } from "../src/ledger/reads/taskDetail.js";
import { openSqliteDb } from "../src/ledger/sqliteDb.js";
import { Database } from "../src/ledger/sqliteDriver.js";
import { runCli, startCli, tempDir, watch, writeFile } from "./helpers/cli.js";
import { fakeGpuEnv } from "./helpers/fakeGpus.js";

/** Fits in "GPU memory" at batch size 16 or less; the command line and LABSWEEP_PARAMS must agree. */
const TRAIN_PY = `import json, os, sys
bs = int(sys.argv[1])
params = json.loads(os.environ["LABSWEEP_PARAMS"])
assert params["batch_size"] == bs, (params, bs)
print(f"training with batch size {bs}", flush=True)
if bs > 16:
    sys.stderr.write("Traceback (most recent call last):\\n  File \\"train.py\\", line 7, in <module>\\n")
    sys.stderr.write(f"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {bs * 64} MiB (GPU 0; 7.79 GiB total capacity)\\n")
    sys.exit(1)
json.dump({"loss": 1 / bs, "ran_with": bs}, open(os.environ["LABSWEEP_RESULT_FILE"], "w"))
`;

function project(onOom: string): string {
  const dir = tempDir();
  writeFile(dir, "train.py", TRAIN_PY);
  writeFile(
    dir,
    "sweep.yaml",
    `command: python3 train.py {batch_size}\nretries: 0\ntrain:\n  output_dir: out\n${onOom}  combinations:\n    - batch_size: [64, 8]\n`,
  );
  return dir;
}

function readCsv(path: string): Record<string, string>[] {
  const [header = [], ...rows] = parse(readFileSync(path, "utf8")) as string[][];
  return rows.map((cells) => Object.fromEntries(header.map((name, index) => [name, cells[index] ?? ""])));
}

function attemptsOf(stateDir: string): Array<{ task_id: number; outcome: string; error: string | null }> {
  const db = new Database(join(stateDir, "ledger.sqlite"), { readonly: true });
  try {
    return db.prepare("SELECT task_id, outcome, error FROM attempts ORDER BY id").all() as Array<{
      task_id: number;
      outcome: string;
      error: string | null;
    }>;
  } finally {
    db.close();
  }
}

/** What both ways of running must leave: the declared size, the used one, the OOM retries. */
function expectShrunk(dir: string): void {
  const rows = readCsv(join(dir, "out", "final_results.csv"));
  const byDeclared = Object.fromEntries(rows.map((row) => [row.batch_size, row]));
  expect(Object.keys(byDeclared).sort()).toEqual(["64", "8"]);
  expect(byDeclared["64"]).toMatchObject({
    batch_size_used: "16",
    oom_retries: "2",
    ran_with: "16",
    attempts: "3",
  });
  expect(byDeclared["8"]).toMatchObject({
    batch_size_used: "8",
    oom_retries: "0",
    ran_with: "8",
    attempts: "1",
  });
  const header = Object.keys(rows[0] ?? {});
  expect(header.slice(-2)).toEqual(["batch_size_used", "oom_retries"]);
  const ooms = attemptsOf(join(dir, ".labsweep")).filter((attempt) => attempt.outcome === "oom");
  expect(ooms.map((attempt) => attempt.error)).toEqual([
    "out of GPU memory (CUDA out of memory)",
    "out of GPU memory (CUDA out of memory)",
  ]);
}

describe("on_oom end to end", () => {
  it("labsweep run: a task out of GPU memory shrinks its batch size and succeeds, spending no retry", async () => {
    const dir = project("  on_oom: {param: batch_size, factor: 0.5, min: 4}\n");
    const result = await runCli(["run", "sweep.yaml", "--no-dashboard"], { cwd: dir });
    expect(result.code, result.stderr).toBe(0);
    expectShrunk(dir);
  });

  it("labsweep serve + labsweep agent: the lease carries the scaled value to a remote agent", async () => {
    const dir = project("  on_oom: {param: batch_size, factor: 0.5, min: 4}\n");
    const served = watch(
      startCli(["serve", join(dir, "sweep.yaml"), "--exit-when-done", "--trust-loopback", "--port", "0"], {
        cwd: dir,
      }),
    );
    await served.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
    const url = (/^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(served.output()) as RegExpExecArray)[1] as string;
    const token = (await runCli(["token", "--state", join(dir, ".labsweep")])).stdout.trim();
    const agentDir = join(tempDir(), "agent");
    const env = { ...fakeGpuEnv([]), LABSWEEP_GPU_LOCK_DIR: tempDir() };
    const agent = watch(
      startCli(["agent", "--server", url, `--token=${token}`, "--state", agentDir, "--slots", "1"], { env }),
    );
    const [ra, rs] = await Promise.all([agent.result, served.result]);
    expect(ra.code, ra.stderr).toBe(0);
    expect(rs.code, rs.stderr).toBe(0);
    expectShrunk(dir);
  });

  it("without on_oom: the failure says out of GPU memory in failed_experiments.csv and status", async () => {
    const dir = project("");
    const result = await runCli(["run", "sweep.yaml", "--no-dashboard"], { cwd: dir });
    expect(result.code).not.toBe(0);
    const failed = readCsv(join(dir, ".labsweep", "failed_experiments.csv"));
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ exit_code: "1", error: "out of GPU memory (CUDA out of memory)" });
    expect(JSON.parse(failed[0]?.params ?? "{}")).toEqual({ batch_size: 64 });
    expect(failed[0]?.last_log_lines).toContain("torch.OutOfMemoryError: CUDA out of memory.");
    const status = await runCli(["status", "sweep.yaml"], { cwd: dir });
    expect(status.stdout).toContain("out of GPU memory (CUDA out of memory)");
    const rows = readCsv(join(dir, "out", "final_results.csv"));
    expect(rows.map((row) => row.batch_size)).toEqual(["8"]);
    expect(Object.keys(rows[0] ?? {})).not.toContain("oom_retries");
    // The dashboard's task page reads its error from here.
    const db = openSqliteDb(join(dir, ".labsweep", "ledger.sqlite"), { readonly: true });
    try {
      const detail = await taskDetail(db, Number(failed[0]?.task_id));
      expect(detail?.error).toMatchObject({
        outcome: "oom",
        message: "out of GPU memory (CUDA out of memory)",
      });
    } finally {
      await db.close();
    }
  });
});
