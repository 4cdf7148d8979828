/**
 * Recovery edge cases of the results writer, each from a file as a crashed writer leaves it:
 * rows appended but never marked written in the ledger (a crash between append and commit),
 * for tasks whose parameters are equal (two commands in one output dir), and a last row cut
 * inside its last cell. Every owed row must end up in the CSV exactly once, whole.
 */
import { readFileSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Db } from "../src/ledger/db.js";
import { owedRowCount } from "../src/ledger/resultRows.js";
import { drainOwedResults } from "../src/results/resultsWriter.js";
import { useLedgerBackends } from "./helpers/postgres.js";
import { csvRecords, succeedAll, sweepLedger } from "./helpers/resultsLedger.js";

const backends = useLedgerBackends();

// Two commands over the same grid, into one dir: tasks 1, 2 (train) and 3, 4 (eval) pairwise
// have equal parameters, so their rows differ only in their metrics.
const SWEEP = `train:
  command: train {x}
  output_dir: out
  combinations:
    - x: [1, 2]
eval:
  command: eval {x}
  output_dir: out
  combinations:
    - x: [1, 2]
`;

/**
 * The ledger as a writer that crashed after appending these tasks' rows and before its commit
 * leaves it: the rows owed again, and no record of the file's last state.
 */
async function crashBeforeCommit(db: Db, taskIds: number[]): Promise<void> {
  for (const id of taskIds) await db.run("UPDATE result_rows SET written = 0 WHERE task_id = $1", [id]);
  await db.run("DELETE FROM result_files");
}

/** Each task's row, by its metric `score` (= 10 * task id): every task exactly once. */
function scores(csv: string): string[] {
  return csvRecords(csv)
    .map((record) => record.score as string)
    .sort();
}

describe.each(backends)("recovery on $name", (backend) => {
  it("counts rows of tasks with equal parameters: one row on disk settles one owed row", async () => {
    const { db, root } = await sweepLedger(backend, SWEEP);
    const csv = join(root, "out", "final_results.csv");
    expect(await succeedAll(db, (_params, id) => ({ metrics: { score: 10 * id } }))).toEqual([1, 2, 3, 4]);
    expect((await drainOwedResults(db)).written).toBe(4);
    expect(scores(csv)).toEqual(["10", "20", "30", "40"]);

    // Every row of eval was appended; the crash came before the commit.
    await crashBeforeCommit(db, [3, 4]);
    expect(await drainOwedResults(db)).toEqual({ written: 0, failed: [] });
    expect(scores(csv)).toEqual(["10", "20", "30", "40"]);
    expect(await owedRowCount(db)).toBe(0);

    // Only task 3's row made it to disk (task 4's row is cut off entirely): task 4's is owed.
    const text = readFileSync(csv, "utf8");
    const lastRow = text.slice(text.lastIndexOf("\n", text.length - 2) + 1);
    truncateSync(csv, Buffer.byteLength(text) - Buffer.byteLength(lastRow));
    expect(scores(csv)).toEqual(["10", "20", "30"]);
    await crashBeforeCommit(db, [3, 4]);
    expect(await drainOwedResults(db)).toEqual({ written: 1, failed: [] });
    expect(scores(csv)).toEqual(["10", "20", "30", "40"]);
  });

  it("tells rows of equal parameters apart by their metrics, whatever order they reached the file", async () => {
    const { db, root } = await sweepLedger(backend, SWEEP);
    const csv = join(root, "out", "final_results.csv");
    await succeedAll(db, (_params, id) => ({ metrics: { score: 10 * id } }));
    expect((await drainOwedResults(db)).written).toBe(4);
    // Task 1's row (x = 1, like task 3's) goes; both are owed again, but only task 3's is on disk.
    const [header, ...rows] = readFileSync(csv, "utf8").trimEnd().split("\n");
    const kept = rows.filter((row) => !row.includes(",10,"));
    expect(kept).toHaveLength(3);
    writeFileSync(csv, `${[header, ...kept].join("\n")}\n`);
    await crashBeforeCommit(db, [1, 3]);
    expect(await drainOwedResults(db)).toEqual({ written: 1, failed: [] });
    expect(scores(csv)).toEqual(["10", "20", "30", "40"]);
  });

  it("treats a last row cut inside its last cell as torn and writes it again whole", async () => {
    const { db, root } = await sweepLedger(backend, SWEEP);
    const csv = join(root, "out", "final_results.csv");
    // gpu_ids is the last column: "12" cut to "1" keeps the row's width but not its value.
    await succeedAll(db, (_params, id) => ({ metrics: { score: 10 * id } }), { gpuIds: [12] });
    expect((await drainOwedResults(db)).written).toBe(4);
    const text = readFileSync(csv, "utf8");
    expect(text.endsWith(",12\n")).toBe(true);
    truncateSync(csv, Buffer.byteLength(text) - 2);
    expect(readFileSync(csv, "utf8").endsWith(",1")).toBe(true);
    await crashBeforeCommit(db, [4]);
    expect(await drainOwedResults(db)).toEqual({ written: 1, failed: [] });
    const records = csvRecords(csv);
    expect(records.map((record) => record.score).sort()).toEqual(["10", "20", "30", "40"]);
    expect(records.map((record) => record.gpu_ids)).toEqual(["12", "12", "12", "12"]);

    // Cut just before its newline: whole-looking, but still a row the writer never finished.
    const whole = readFileSync(csv, "utf8");
    truncateSync(csv, Buffer.byteLength(whole) - 1);
    await crashBeforeCommit(db, [4]);
    expect(await drainOwedResults(db)).toEqual({ written: 1, failed: [] });
    expect(readFileSync(csv, "utf8")).toBe(whole);
  });
});
