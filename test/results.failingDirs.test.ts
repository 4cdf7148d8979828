/**
 * A results dir that cannot be written fails alone: the other dirs keep getting their rows, the
 * failing one and why are in the ledger (for `status` and the dashboard), and it is tried again
 * on every drain, so it recovers once fixed. Metrics named like a column labsweep writes itself
 * are kept under a `metric_` column instead of breaking the header. Real ledgers, real files.
 */
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Db } from "../src/ledger/db.js";
import { computeOverview } from "../src/ledger/reads/overview.js";
import { resultDirErrors } from "../src/ledger/resultDirErrors.js";
import { owedRowCount } from "../src/ledger/resultRows.js";
import { METADATA_COLUMNS } from "../src/results/columns.js";
import { drainOwedResults } from "../src/results/resultsWriter.js";
import { resumeFromResults } from "../src/results/resumeScan.js";
import { matchCsvRows } from "../src/results/rowMatcher.js";
import { useLedgerBackends } from "./helpers/postgres.js";
import { csvRecords, succeedAll, sweepLedger } from "./helpers/resultsLedger.js";

const backends = useLedgerBackends();

// Tasks x = 1, 2 write to out/a; x = 3 to out/b.
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

async function events(db: Db, kind: string): Promise<number> {
  const row = await db.one<{ n: number }>("SELECT count(*) AS n FROM events WHERE kind = $1", [kind]);
  return Number(row?.n ?? 0);
}

describe.each(backends)("result dirs on $name", (backend) => {
  it("keeps a metric named like any column labsweep writes, under metric_NAME", async () => {
    const { db, root } = await sweepLedger(backend, SWEEP);
    const clashing = Object.fromEntries(
      ["phase", "x", ...METADATA_COLUMNS].map((name) => [name, `metric ${name}`]),
    );
    await succeedAll(db, (params) => ({
      metrics: { ...clashing, metric_phase: "prefixed already", loss: Number(params.x) / 10 },
    }));
    const outcome = await drainOwedResults(db);
    expect(outcome).toEqual({ written: 3, failed: [] });
    for (const [dir, xs] of [
      ["a", ["1", "2"]],
      ["b", ["3"]],
    ] as const) {
      const records = csvRecords(join(root, "out", dir, "final_results.csv"));
      expect(records.map((record) => record.x)).toEqual(xs);
      for (const record of records) {
        expect(record.phase).toBe(dir);
        expect(record.attempts).toBe("1");
        expect(record.wall_seconds).toBe("1");
        for (const name of Object.keys(clashing)) expect(record[`metric_${name}`]).toBe(`metric ${name}`);
        expect(record.metric_metric_phase).toBe("prefixed already");
        expect(record.loss).toBe(String(Number(record.x) / 10));
      }
    }
    // Read back (the resume scan), a prefixed column is its metric again; "__proto__" stays a metric.
    const header = ["phase", "x", "metric_phase", "metric_metric_phase", "metric_x", "loss", "__proto__"];
    const match = matchCsvRows([{ id: 1, params: { x: 1 } }], header, [
      ["a", "1", "p", "pp", "mx", "0.1", ""],
    ]);
    expect(match.matched).toEqual([
      {
        taskId: 1,
        metrics: Object.fromEntries([
          ["phase", "p"],
          ["metric_phase", "pp"],
          ["x", "mx"],
          ["loss", 0.1],
          ["__proto__", null],
        ]),
      },
    ]);
    expect(Object.keys(match.matched[0]?.metrics ?? {})).toContain("__proto__");
  });

  it("writes the other dirs when one cannot be written, says why, and recovers once it is fixed", async () => {
    const { db, root } = await sweepLedger(backend, SWEEP);
    const dirA = join(root, "out", "a");
    // A file where the dir should be: no permission trick, so it fails even for root.
    mkdirSync(join(root, "out"));
    writeFileSync(dirA, "not a directory");
    await succeedAll(db, (params) => ({ metrics: { loss: Number(params.x) } }));

    const first = await drainOwedResults(db);
    expect(first.written).toBe(1);
    expect(first.failed).toEqual([{ outputDir: dirA, error: expect.stringContaining(dirA), news: true }]);
    expect(csvRecords(join(root, "out", "b", "final_results.csv")).map((record) => record.x)).toEqual(["3"]);
    const [failing, ...others] = await resultDirErrors(db);
    expect(others).toEqual([]);
    expect(failing).toMatchObject({ outputDir: dirA, owedRows: 2 });
    expect(failing?.error).toMatch(/^cannot .*out\/a.*: .*ENOTDIR/);
    // The dashboard's overview shows it too.
    const overview = await computeOverview(db, { slots: async () => 1 }, false);
    expect(overview.resultErrors).toEqual(await resultDirErrors(db));

    // Tried again on every drain; said once (one event), not on every try.
    const again = await drainOwedResults(db);
    expect(again.failed).toEqual([{ outputDir: dirA, error: failing?.error, news: false }]);
    expect(await events(db, "results_dir_failing")).toBe(1);
    expect(await owedRowCount(db)).toBe(2);

    rmSync(dirA);
    expect(await drainOwedResults(db)).toEqual({ written: 2, failed: [] });
    expect(csvRecords(join(dirA, "final_results.csv")).map((record) => record.x)).toEqual(["1", "2"]);
    expect(await resultDirErrors(db)).toEqual([]);
    expect(await events(db, "results_dir_recovered")).toBe(1);
    expect(await owedRowCount(db)).toBe(0);
  });

  it("reads a failing dir that is owed nothing again on each drain, and clears it once fixed", async () => {
    const { db, root } = await sweepLedger(backend, SWEEP);
    const csvA = join(root, "out", "a", "final_results.csv");
    mkdirSync(join(root, "out", "a"), { recursive: true });
    writeFileSync(csvA, 'phase,x,loss\na,"1"x,2\n');
    expect((await resumeFromResults(db, 1500)).failedDirs).toBe(1);
    const drained = await drainOwedResults(db);
    expect(drained).toEqual({
      written: 0,
      failed: [expect.objectContaining({ outputDir: join(root, "out", "a") })],
    });
    expect(await resultDirErrors(db)).toHaveLength(1);
    // Fixed by hand, with task x = 1's row: the dir is fine, and that task is complete.
    writeFileSync(csvA, "phase,x,loss\na,1,0.5\n");
    expect(await drainOwedResults(db)).toEqual({ written: 0, failed: [] });
    expect(await resultDirErrors(db)).toEqual([]);
    const found = await db.one<{ state: string }>("SELECT state FROM tasks WHERE id = 1");
    expect(found?.state).toBe("succeeded");
  });

  it("fails a dir whose existing CSV is malformed alone, at the resume scan and in the writer", async () => {
    const { db, root } = await sweepLedger(backend, SWEEP);
    const csvA = join(root, "out", "a", "final_results.csv");
    mkdirSync(join(root, "out", "a"), { recursive: true });
    writeFileSync(csvA, 'phase,x,loss\na,"1"x,2\n');
    const resumed = await resumeFromResults(db, 1500);
    expect(resumed.failedDirs).toBe(1);
    expect((await resultDirErrors(db))[0]?.error).toMatch(/malformed CSV file .*out\/a\/final_results\.csv/);
    await succeedAll(db, (params) => ({ metrics: { loss: Number(params.x) } }));

    const drained = await drainOwedResults(db);
    expect(drained.written).toBe(1);
    expect(drained.failed.map((failed) => failed.outputDir)).toEqual([join(root, "out", "a")]);
    expect(csvRecords(join(root, "out", "b", "final_results.csv")).map((record) => record.x)).toEqual(["3"]);

    // Repaired by hand: its one row is task x = 1's, so only x = 2 is appended.
    writeFileSync(csvA, "phase,x,loss\na,1,1\n");
    expect(await drainOwedResults(db)).toEqual({ written: 1, failed: [] });
    expect(csvRecords(csvA).map((record) => record.x)).toEqual(["1", "2"]);
    expect(await resultDirErrors(db)).toEqual([]);
  });
});
