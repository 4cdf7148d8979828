/**
 * The coordinator tries a result dir that could not be written again on its own, with no task
 * finishing, so a dir fixed by hand (chmod, a repaired CSV) gets its rows while `serve` idles;
 * the error is said once, not on every try. Real ledgers, real files.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Coordinator } from "../src/coordinator/coordinator.js";
import { resultDirErrors } from "../src/ledger/resultDirErrors.js";
import { useLedgerBackends } from "./helpers/postgres.js";
import { csvRecords, succeedAll, sweepLedger } from "./helpers/resultsLedger.js";

const backends = useLedgerBackends();

const SWEEP = `command: run {x}
a:
  output_dir: out/a
  combinations:
    - x: [1, 2]
b:
  output_dir: out/b
  combinations:
    - x: [3]
`;

async function until(condition: () => Promise<boolean> | boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe.each(backends)("result retries on $name", (backend) => {
  it("writes a dir once it is fixed, with no task finishing, having warned once", async () => {
    const { db, root } = await sweepLedger(backend, SWEEP);
    const dirA = join(root, "out", "a");
    mkdirSync(join(root, "out"));
    writeFileSync(dirA, "not a directory");
    await succeedAll(db);
    const warnings: string[] = [];
    const coordinator = new Coordinator(db, {
      stateDir: join(root, "state"),
      warn: (message) => warnings.push(message),
      resultsRetryMs: 20,
    });
    try {
      await coordinator.flushResults();
      expect(existsSync(join(root, "out", "b", "final_results.csv"))).toBe(true);
      expect(warnings).toEqual([
        expect.stringMatching(new RegExp(`^labsweep: cannot write results to ${dirA}: `)),
      ]);
      // A few retries fail the same way: still one warning, one event.
      await until(async () => {
        const [failing] = await resultDirErrors(db);
        return failing !== undefined && failing.triedAt > failing.since;
      }, "a retry");
      expect(warnings).toHaveLength(1);

      rmSync(dirA);
      await until(() => existsSync(join(dirA, "final_results.csv")), "the fixed dir's rows");
      await until(async () => (await resultDirErrors(db)).length === 0, "the error to clear");
      expect(csvRecords(join(dirA, "final_results.csv")).map((record) => record.x)).toEqual(["1", "2"]);
    } finally {
      coordinator.stopRetryingResults();
      await coordinator.drainResults();
    }
  });
});
