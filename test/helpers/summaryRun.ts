import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import { runCli, writeFile } from "./cli.js";
import { SUMMARY_SWEEP, SUMMARY_TRAIN } from "./summaryFixture.js";

/**
 * The summary fixture's sweep, run for real by `labsweep run` in a dir of its own: made once per
 * file (tempDir() removes its dirs after each test), so the caller removes it. Three tasks fail
 * by design, and the run says so.
 */
export async function runSummarySweep(prefix: string): Promise<{ dir: string; config: string }> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  writeFile(dir, "train.py", SUMMARY_TRAIN);
  const config = writeFile(dir, "sweep.yaml", SUMMARY_SWEEP);
  const run = await runCli(["run", config, "--no-dashboard"], { cwd: dir, timeoutMs: 120_000 });
  expect(run.stderr).toMatch(/9 succeeded, 3 failed/);
  return { dir, config };
}
