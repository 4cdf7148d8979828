/**
 * A task that writes its result with Python's json.dump and a NaN (json.dump's default writes
 * the bare token NaN, which is not JSON) succeeds, and its row holds "nan", "inf", "-inf" as
 * the Python client writes them; verify accepts the row. Run `npm run build` first.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runCli, tempDir, writeFile } from "./helpers/cli.js";
import { csvRecords } from "./helpers/resultsLedger.js";

const TASK_PY = `import json, os
json.dump({"loss": float("nan"), "best": float("inf"), "worst": float("-inf"), "note": "NaN"},
          open(os.environ["LABSWEEP_RESULT_FILE"], "w"))
`;
const SWEEP = `command: python3 task.py {x}
main:
  output_dir: out
  combinations:
    - x: [1]
`;
const CLEAN_ENV = { LABSWEEP_STORE: "" };

describe("a result file with NaN", () => {
  it("is a success whose row holds nan, inf and -inf", async () => {
    const dir = tempDir();
    writeFile(dir, "task.py", TASK_PY);
    const sweep = writeFile(dir, "sweep.yaml", SWEEP);
    const run = await runCli(["run", sweep, "--no-dashboard"], { cwd: dir, env: CLEAN_ENV });
    expect(run.code, run.stderr).toBe(0);
    const [row] = csvRecords(join(dir, "out", "final_results.csv"));
    expect(row).toEqual(
      expect.objectContaining({ x: "1", loss: "nan", best: "inf", worst: "-inf", note: "NaN" }),
    );
    const verify = await runCli(["verify", sweep], { cwd: dir, env: CLEAN_ENV });
    expect(verify.code, verify.stdout).toBe(0);
  });
});
