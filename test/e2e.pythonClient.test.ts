/**
 * End to end: a task's script does `import labsweep` with nothing installed (the agent puts the
 * shipped client on PYTHONPATH), reports a curve, resumes from its checkpoint dir after a failed
 * attempt, and returns nested metrics that land as dotted CSV columns — written through the
 * client or by hand. Run `npm run build` first: these tests run bin/labsweep.js, which runs dist/.
 */
import { copyFileSync, existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { describe, expect, it } from "vitest";
import { Database } from "../src/ledger/sqliteDriver.js";
import { type CliResult, REPO_ROOT, runCli, tempDir, writeFile } from "./helpers/cli.js";

function readCsv(path: string): Record<string, string>[] {
  const [header = [], ...rows] = parse(readFileSync(path, "utf8")) as string[][];
  return rows.map((cells) => Object.fromEntries(header.map((name, index) => [name, cells[index] ?? ""])));
}

function expectCode(result: CliResult, code: number): void {
  expect(result.code, `labsweep exited ${result.code}:\n${result.stderr}`).toBe(code);
}

interface AttemptRow {
  task_id: number;
  number: number;
  outcome: string | null;
  error: string | null;
}

function attempts(dir: string): AttemptRow[] {
  const db = new Database(join(dir, ".labsweep", "ledger.sqlite"), { readonly: true });
  try {
    return db
      .prepare("SELECT task_id, number, outcome, error FROM attempts ORDER BY task_id, number")
      .all() as AttemptRow[];
  } finally {
    db.close();
  }
}

/** A sweep of `task.py` over x in `xs`, run by `labsweep run` without PYTHONPATH set. */
async function runSweep(task: string, xs: number[], extra = ""): Promise<{ dir: string; result: CliResult }> {
  const dir = tempDir();
  writeFile(dir, "task.py", task);
  const config = writeFile(
    dir,
    "sweep.yaml",
    `command: python3 task.py {x}\nbackoff: 0s\n${extra}train:\n  output_dir: out\n  combinations:\n    - x: [${xs.join(", ")}]\n`,
  );
  const result = await runCli(["run", config, "--no-dashboard"], { cwd: dir, env: { PYTHONPATH: "" } });
  return { dir, result };
}

describe("a task using the Python client", () => {
  it("imports it uninstalled, reports a curve to its events file and lands dotted columns", async () => {
    const task = `import labsweep
p = labsweep.params()
for epoch in range(3):
    labsweep.report(epoch, loss=1.0 / (epoch + 1), val={"acc": epoch / 10})
labsweep.result(acc=p["x"] / 10, val={"acc": 0.5, "loss": {"mean": 0.25}})
`;
    const { dir, result } = await runSweep(task, [1, 2]);
    expectCode(result, 0);
    const rows = readCsv(join(dir, "out", "final_results.csv")).sort((a, b) => Number(a.x) - Number(b.x));
    expect(rows.map((row) => [row.x, row.acc, row["val.acc"], row["val.loss.mean"]])).toEqual([
      ["1", "0.1", "0.5", "0.25"],
      ["2", "0.2", "0.5", "0.25"],
    ]);
    for (const taskId of ["1", "2"]) {
      const events = join(dir, ".labsweep", "tasks", taskId, "attempt-1.events.jsonl");
      expect(statSync(events).mode & 0o777).toBe(0o600);
      const lines = readFileSync(events, "utf8")
        .trimEnd()
        .split("\n")
        .map((line) => JSON.parse(line));
      expect(lines.map((line) => [line.type, line.step, line.metrics])).toEqual([
        ["report", 0, { loss: 1, "val.acc": 0 }],
        ["report", 1, { loss: 0.5, "val.acc": 0.1 }],
        ["report", 2, { loss: 1 / 3, "val.acc": 0.2 }],
      ]);
    }
  });

  it("finds in its checkpoint dir what its failed first attempt saved there", async () => {
    const task = `import os, sys, labsweep
saved = labsweep.checkpoint_dir() / "state.txt"
if not saved.exists():
    saved.write_text(str(labsweep.checkpoint_dir()))
    sys.exit("attempt 1 fails after saving its checkpoint")
labsweep.result(resumed_from=saved.read_text(), same=saved.read_text() == str(labsweep.checkpoint_dir()))
`;
    const { dir, result } = await runSweep(task, [1], "retries: 1\n");
    expectCode(result, 0);
    expect(attempts(dir).map((row) => row.outcome)).toEqual(["failed", "succeeded"]);
    const [row] = readCsv(join(dir, "out", "final_results.csv"));
    expect(row?.same).toBe("true");
    const checkpoints = join(dir, ".labsweep", "checkpoints");
    const [signature] = readdirSync(checkpoints);
    expect(row?.resumed_from).toBe(join(checkpoints, signature as string));
    expect(statSync(join(checkpoints, signature as string)).mode & 0o777).toBe(0o700);
  });

  it("flattens a hand-written nested result file the same way", async () => {
    const task = `import json, os
with open(os.environ["LABSWEEP_RESULT_FILE"], "w") as f:
    json.dump({"val": {"acc": 0.75, "f1": {"macro": 0.5}}, "n": 3}, f)
`;
    const { dir, result } = await runSweep(task, [1]);
    expectCode(result, 0);
    const [row] = readCsv(join(dir, "out", "final_results.csv"));
    expect(row).toMatchObject({ "val.acc": "0.75", "val.f1.macro": "0.5", n: "3" });
    expect(Object.keys(row ?? {})).not.toContain("val");
  });

  it("fails an attempt whose result file reaches one name twice, saying which", async () => {
    const task = `import os
with open(os.environ["LABSWEEP_RESULT_FILE"], "w") as f:
    f.write('{"val.acc": 1, "val": {"acc": 2}}')
`;
    const { dir, result } = await runSweep(task, [1], "retries: 0\n");
    expectCode(result, 1);
    const [attempt] = attempts(dir);
    expect(attempt?.outcome).toBe("failed");
    expect(attempt?.error).toBe(
      'LABSWEEP_RESULT_FILE: metric "val.acc" is given twice (once nested, once dotted)',
    );
    expect(existsSync(join(dir, "out", "final_results.csv"))).toBe(false);
  });
});

describe("the example (examples/poisoning/train.py)", () => {
  const METRICS = ["test_acc", "test_loss", "train_acc", "train_loss", "num_parameters"];

  /** A two-task cut of the example's sweep, four epochs each, run by `labsweep run`. */
  async function runExample(command: string): Promise<{ dir: string; rows: Record<string, string>[] }> {
    const dir = tempDir();
    copyFileSync(join(REPO_ROOT, "examples", "poisoning", "train.py"), join(dir, "train.py"));
    const config = writeFile(
      dir,
      "sweep.yaml",
      `command: ${command}\nretries: 1\nbackoff: 0s\ndefaults: { epochs: 4, dataset: moons, attack: targeted, seed: 42 }\npoisoning:\n  output_dir: out\n  combinations:\n    - poison_ratio: [0.1]\n    - width: [2, 4]\n`,
    );
    const result = await runCli(["run", config, "--no-dashboard"], { cwd: dir });
    expectCode(result, 0);
    const rows = readCsv(join(dir, "out", "final_results.csv")).sort(
      (a, b) => Number(a.width) - Number(b.width),
    );
    return { dir, rows };
  }

  it("stopped after its first epoch, resumes on its retry and ends as a run never stopped", async () => {
    // Attempt 1 finds no checkpoint and asks itself to stop; attempt 2 finds the checkpoint.
    const stopped = await runExample(
      'test -e "$LABSWEEP_CHECKPOINT_DIR/last.ckpt" || touch "$LABSWEEP_STOP_FILE"; python3 train.py',
    );
    const plain = await runExample("python3 train.py");
    expect(attempts(stopped.dir).map((row) => row.outcome)).toEqual([
      "failed",
      "succeeded",
      "failed",
      "succeeded",
    ]);
    expect(attempts(plain.dir).map((row) => row.outcome)).toEqual(["succeeded", "succeeded"]);
    const metrics = (rows: Record<string, string>[]) =>
      rows.map((row) => [row.width, ...METRICS.map((name) => row[name])]);
    expect(metrics(stopped.rows)).toEqual(metrics(plain.rows));
    expect(
      metrics(plain.rows)
        .flat()
        .every((cell) => cell !== "" && cell !== undefined),
    ).toBe(true);

    const steps = (dir: string, attempt: number) =>
      readFileSync(join(dir, ".labsweep", "tasks", "1", `attempt-${attempt}.events.jsonl`), "utf8")
        .trimEnd()
        .split("\n")
        .map((line) => (JSON.parse(line) as { step: number }).step);
    expect(steps(stopped.dir, 1)).toEqual([1]);
    expect(steps(stopped.dir, 2)).toEqual([2, 3, 4]);
    expect(steps(plain.dir, 1)).toEqual([1, 2, 3, 4]);
  });
});
