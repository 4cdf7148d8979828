/**
 * The results row of an on_oom phase: the parameter's column keeps the declared value, and
 * `<param>_used` and `oom_retries` follow the other metadata columns; a metric named like them
 * gets `metric_`, and reading a row back takes neither for a metric.
 */
import { describe, expect, it } from "vitest";
import { metadataValues, resultTable } from "../src/results/columns.js";
import { matchCsvRows } from "../src/results/rowMatcher.js";

const run = { wallSeconds: 1.5, attempts: 1, host: "h", gpuIds: "0", usage: null };

describe("on_oom's columns", () => {
  it("follow the metadata columns, with the declared value in the parameter's column", () => {
    const table = resultTable(
      ["phase"],
      [
        {
          leading: ["train"],
          params: { batch_size: 64, seed: 1 },
          metrics: { acc: 0.9, oom_retries: 7, batch_size_used: "mine" },
          metadata: metadataValues({ ...run, oom: { param: "batch_size", used: 16, retries: 2 } }),
        },
        {
          leading: ["other"],
          params: { batch_size: 8, seed: 2 },
          metrics: { acc: 0.5 },
          metadata: metadataValues(run),
        },
      ],
    );
    expect(table.header).toEqual([
      "phase",
      "batch_size",
      "seed",
      "acc",
      "metric_oom_retries",
      "metric_batch_size_used",
      "wall_seconds",
      "peak_rss_mb",
      "gpu_util_mean",
      "gpu_mem_peak_mb",
      "energy_wh",
      "attempts",
      "host",
      "gpu_ids",
      "batch_size_used",
      "oom_retries",
    ]);
    expect(table.rows[0]).toEqual([
      "train",
      "64",
      "1",
      "0.9",
      "7",
      "mine",
      "1.5",
      "",
      "",
      "",
      "",
      "1",
      "h",
      "0",
      "16",
      "2",
    ]);
    // A row without on_oom leaves them blank.
    expect(table.rows[1]?.slice(-2)).toEqual(["", ""]);
  });

  it("has no such columns where no row has on_oom", () => {
    const table = resultTable(
      ["phase"],
      [{ leading: ["p"], params: { x: 1 }, metrics: {}, metadata: metadataValues(run) }],
    );
    expect(table.header).not.toContain("oom_retries");
    expect(table.header).not.toContain("x_used");
  });

  it("are read back as neither parameters nor metrics", () => {
    const metrics = { acc: 0.9, oom_retries: 7 };
    const table = resultTable(
      ["phase"],
      [
        {
          leading: ["train"],
          params: { batch_size: 64 },
          metrics,
          metadata: metadataValues({ ...run, oom: { param: "batch_size", used: 16, retries: 2 } }),
        },
      ],
    );
    const report = matchCsvRows([{ id: 1, params: { batch_size: 64 }, metrics }], table.header, table.rows);
    expect(report.matched).toEqual([{ taskId: 1, metrics }]);
  });
});
