/**
 * `labsweep export` lays out the same columns as final_results.csv, in the same order (after
 * task_id and phases): the attempts and usage columns included, metrics named like a parameter
 * kept, computed floats rounded as the CSV rounds them, metrics printed as the task wrote them,
 * and what was not measured left blank. Real ledgers on SQLite and PostgreSQL.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type ExportedResult, exportedResults, resultsTable } from "../src/results/exportResults.js";
import { drainOwedResults } from "../src/results/resultsWriter.js";
import { useLedgerBackends } from "./helpers/postgres.js";
import { csvRecords, succeedAll, sweepLedger } from "./helpers/resultsLedger.js";

const backends = useLedgerBackends();

const SWEEP = `command: run {x}
main:
  output_dir: out
  combinations:
    - x: [1, 2]
`;

describe.each(backends)("export on $name", (backend) => {
  it("has final_results.csv's columns in its order, without float noise, blanks for the unmeasured", async () => {
    const { db, root } = await sweepLedger(backend, SWEEP);
    await succeedAll(db, (params) => ({
      // The task wrote 0.50455183; x is also a parameter.
      metrics: { acc: 0.50455183, x: `metric of ${params.x}`, big: 1e21, nested: { a: [1, 2] } },
      // Computed from milliseconds: 504.55183 / 1000.
      wallSeconds: 504.55183 / 1000,
      usage:
        params.x === 1
          ? { peak_rss_mb: 812.5, gpu_util_mean: 61.2, gpu_mem_peak_mb: 9000, energy_wh: 1.25, samples: 3 }
          : // A task shorter than the first sample: nothing measured (ledgers from before held 0).
            { peak_rss_mb: 0, gpu_util_mean: null, gpu_mem_peak_mb: null, energy_wh: null, samples: 0 },
    }));
    await drainOwedResults(db);
    const results: ExportedResult[] = [];
    for await (const result of exportedResults(db)) results.push(result);
    const table = resultsTable(results);
    const csvHeader = Object.keys(csvRecords(join(root, "out", "final_results.csv"))[0] ?? {});
    expect(table.header).toEqual(["task_id", "phases", ...csvHeader.filter((name) => name !== "phase")]);
    expect(table.header).toEqual([
      "task_id",
      "phases",
      "x",
      "acc",
      "metric_x",
      "big",
      "nested",
      "wall_seconds",
      "peak_rss_mb",
      "gpu_util_mean",
      "gpu_mem_peak_mb",
      "energy_wh",
      "attempts",
      "host",
      "gpu_ids",
    ]);
    expect(table.rows).toEqual([
      [
        "1",
        "main",
        "1",
        "0.50455183",
        "metric of 1",
        "1e+21",
        '{"a":[1,2]}',
        "0.505",
        "812.5",
        "61.2",
        "9000",
        "1.25",
        "1",
        "h",
        "",
      ],
      [
        "2",
        "main",
        "2",
        "0.50455183",
        "metric of 2",
        "1e+21",
        '{"a":[1,2]}',
        "0.505",
        "",
        "",
        "",
        "",
        "1",
        "h",
        "",
      ],
    ]);
    // The CSV has the same cells under the same columns.
    const csvRows = csvRecords(join(root, "out", "final_results.csv"));
    for (const [index, row] of table.rows.entries())
      expect(csvHeader.slice(1).map((name) => csvRows[index]?.[name])).toEqual(row.slice(2));
    // JSON lines carry the same values.
    expect(results[0]).toMatchObject({
      wall_seconds: 0.505,
      attempts: 1,
      peak_rss_mb: 812.5,
      energy_wh: 1.25,
    });
    expect(results[1]).toMatchObject({ peak_rss_mb: null, gpu_util_mean: null });
  });

  it("keeps its task_id and phases columns when parameters (and metrics) are named like them", async () => {
    const { db } = await sweepLedger(
      backend,
      "command: run {task_id} {phases}\nmain:\n  combinations:\n    - task_id: [70]\n    - phases: [p]\n",
    );
    await succeedAll(db, () => ({ metrics: { task_id: "m", param_task_id: "pm" } }));
    const results: ExportedResult[] = [];
    for await (const result of exportedResults(db)) results.push(result);
    const table = resultsTable(results);
    expect(table.header.slice(0, 7)).toEqual([
      "task_id",
      "phases",
      "param_task_id",
      "param_phases",
      "metric_task_id",
      "metric_param_task_id",
      "wall_seconds",
    ]);
    expect(new Set(table.header).size).toBe(table.header.length);
    expect(table.rows[0]?.slice(0, 6)).toEqual([String(results[0]?.task_id), "main", "70", "p", "m", "pm"]);
  });
});
