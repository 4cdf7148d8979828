/**
 * `labsweep verify`'s check and repair of results files against the ledger, on SQLite and on
 * PostgreSQL: real ledgers, real CSV files written by the results writer, then damaged by hand.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { describe, expect, it } from "vitest";
import type { Db } from "../src/ledger/db.js";
import { LEDGER_LOCKS, tryLockLedger } from "../src/ledger/dialect.js";
import { syncSweep } from "../src/ledger/syncSweep.js";
import { writeOwedResults } from "../src/results/resultsWriter.js";
import { verifyOutputDirs } from "../src/results/verify.js";
import { fixOutputDirs, ResultsBusyError } from "../src/results/verifyFix.js";
import { loadSweep } from "../src/sweep/loadSweep.js";
import { type LedgerBackend, useLedgerBackends } from "./helpers/postgres.js";
import { succeedAll, sweepLedger } from "./helpers/resultsLedger.js";

const backends = useLedgerBackends();

// x = 1..4 in one dir; task x=4 reports a note spanning two lines (a quoted cell with a newline).
const SWEEP = `command: run {x}
main:
  output_dir: out
  combinations:
    - x: [1, 2, 3, 4]
`;

async function ranSweep(backend: LedgerBackend, yaml = SWEEP) {
  const { db, root } = await sweepLedger(backend, yaml);
  await succeedAll(db, (params) => ({
    metrics: { loss: Number(params.x) / 10, ...(params.x === 4 ? { note: "two\nlines" } : {}) },
  }));
  await writeOwedResults(db);
  const dir = join(root, "out");
  return { db, root, dir, csv: join(dir, "final_results.csv") };
}

async function problems(db: Db, dir: string) {
  const [report] = await verifyOutputDirs(db, [dir]);
  return (report?.problems ?? []).map((problem) => ({
    kind: problem.kind,
    line: problem.line,
    task: problem.task?.params?.x ?? null,
  }));
}

/** The file's lines; `lines[n - 1]` is line n. */
function linesOf(path: string): string[] {
  return readFileSync(path, "utf8").split("\n");
}

describe.each(backends)("verify on $name", (backend) => {
  it("finds nothing wrong with what a run wrote", async () => {
    const { db, dir, csv } = await ranSweep(backend);
    expect(linesOf(csv)).toHaveLength(7); // header, 3 rows, a row on 2 lines, the final ""
    expect(await problems(db, dir)).toEqual([]);
  });

  it("names the line of a duplicate, unknown and torn row and of none of the good ones, and the task of a missing one", async () => {
    const { db, dir, csv } = await ranSweep(backend);
    const [header, row1, row2, row3, row4a, row4b] = linesOf(csv);
    // Line 2: x=1; 3: x=3 (x=2 deleted); 4-5: x=4 (quoted, two lines); 6: x=1 again;
    // 7: x=3 with another loss; 8: x=9, no task's; 9: x=1 cut short.
    const planted = [
      header,
      row1,
      row3,
      row4a,
      row4b,
      row1,
      row3?.replace(",0.3,", ",0.7,"),
      row1?.replace("main,1,", "main,9,"),
    ];
    writeFileSync(csv, `${planted.join("\n")}\n${row1?.slice(0, 8)}`);
    expect(row2).toContain("main,2,");
    expect(await problems(db, dir)).toEqual([
      { kind: "duplicate", line: 6, task: 1 },
      { kind: "unknown", line: 7, task: 3 },
      { kind: "unknown", line: 8, task: null },
      { kind: "torn", line: 9, task: null },
      { kind: "missing", line: null, task: 2 },
    ]);
  });

  it("--fix moves foreign rows to a side file with their lines, writes the missing row, and then all is well", async () => {
    const { db, dir, csv } = await ranSweep(backend);
    const [header, row1, row2, row3, row4a, row4b] = linesOf(csv);
    const planted = [header, row1, row1, row3, row4a, row4b, row1?.replace("main,1,", "main,9,")];
    writeFileSync(csv, `${planted.join("\n")}\n${row1?.slice(0, 8)}`);

    const fix = await fixOutputDirs(db, [dir], { now: new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 6)) });
    expect(fix.dirs).toEqual([expect.objectContaining({ outputDir: dir, moved: 3, owed: 1, error: null })]);
    expect(fix.drain.written).toBe(1);
    const side = join(dir, "final_results.csv.foreign-2026-01-02T03-04-05-006Z.csv");
    expect(fix.dirs[0]?.sideFile).toBe(side);
    // The torn row's text is one cell (under `phase`): its other cells never arrived.
    const moved = parse(readFileSync(side), { columns: true, relax_column_count: true }) as Array<
      Record<string, string>
    >;
    expect(moved.map((row) => [row.source_line, row.reason, row.x])).toEqual([
      ["3", "duplicate", "1"],
      ["7", "unknown", "9"],
      ["8", "torn", undefined],
    ]);
    expect(moved[2]?.phase).toBe(row1?.slice(0, 8));
    // The good rows stay byte for byte, in their order; the missing one is appended.
    expect(linesOf(csv)).toEqual([header, row1, row3, row4a, row4b, row2, ""]);
    expect(await problems(db, dir)).toEqual([]);
    // Nothing left to move: a second fix writes no side file and changes nothing.
    const again = await fixOutputDirs(db, [dir]);
    expect(again.dirs[0]).toEqual(expect.objectContaining({ moved: 0, owed: 0, sideFile: null }));
    expect(readdirSync(dir).filter((name) => name.includes(".foreign-"))).toHaveLength(1);
  });

  it("tells a row the ledger has not seen succeed; --fix imports it, as a run's resume scan would", async () => {
    const { db, root } = await sweepLedger(backend, SWEEP);
    const dir = join(root, "out");
    mkdirSync(dir);
    // The original system's file: x=2's result, which the ledger has as pending.
    writeFileSync(join(dir, "final_results.csv"), "x,loss\n2,0.25\n");
    expect(await problems(db, dir)).toEqual([{ kind: "unimported", line: 2, task: 2 }]);
    const fix = await fixOutputDirs(db, [dir]);
    expect(fix.dirs[0]).toEqual(expect.objectContaining({ moved: 0, owed: 0 }));
    expect(await problems(db, dir)).toEqual([]);
  });

  it("reports a missing file's rows (--fix writes them), and an unreadable file once (--fix leaves it alone)", async () => {
    const { db, dir, csv } = await ranSweep(backend);
    const bad = 'phase,x,loss\nmain,"1"x,2\n';
    writeFileSync(csv, bad);
    const [report] = await verifyOutputDirs(db, [dir]);
    expect(report?.problems).toEqual([
      expect.objectContaining({ kind: "unreadable", file: csv, line: null }),
    ]);
    const fix = await fixOutputDirs(db, [dir]);
    expect(fix.dirs[0]?.error).toContain(`malformed CSV file ${csv}`);
    expect(readFileSync(csv, "utf8")).toBe(bad);

    const { db: other, root } = await sweepLedger(backend, SWEEP);
    await succeedAll(other, (params) => ({ metrics: { loss: Number(params.x) } }));
    const empty = join(root, "out");
    expect(existsSync(empty)).toBe(false);
    const [owed] = await verifyOutputDirs(other, [empty]);
    expect(owed?.problems.map((problem) => problem.kind)).toEqual(Array(4).fill("missing"));
    // Never drained: the ledger owes those rows, and says so.
    expect(owed?.problems[0]?.detail).toBe(
      "the file does not exist (its row is owed: a running run or serve writes it, unless the dir cannot be written)",
    );
    // --fix writes the whole file anew, as the results writer would have.
    expect((await fixOutputDirs(other, [empty])).drain.written).toBe(4);
    expect(await problems(other, empty)).toEqual([]);
  });

  it("takes the row of a task no config lists any more as explained, and owes it no row", async () => {
    const { db, root, dir } = await ranSweep(backend);
    // x=4 left out of the config: its task stays in the ledger, inactive.
    await syncSweep(
      db,
      loadSweep([{ file: join(root, "sweep.yaml"), text: SWEEP.replace(", 4]", "]") }]),
      5000,
    );
    expect(await problems(db, dir)).toEqual([]);
    await fixOutputDirs(db, [dir]);
    expect(linesOf(join(dir, "final_results.csv"))).toHaveLength(7);
  });

  it("tells apart rows of tasks with equal parameters by their metrics", async () => {
    // Two phases, one dir, same x, different commands: two tasks whose rows share a key.
    const yaml = `a:
  command: run-a {x}
  output_dir: out
  combinations:
    - x: [1]
b:
  command: run-b {x}
  output_dir: out
  combinations:
    - x: [1]
`;
    const { db, root } = await sweepLedger(backend, yaml);
    await succeedAll(db, (_params, taskId) => ({ metrics: { loss: taskId } }));
    await writeOwedResults(db);
    const dir = join(root, "out");
    const csv = join(dir, "final_results.csv");
    expect(await problems(db, dir)).toEqual([]);
    const [header, first, second] = linesOf(csv);
    writeFileSync(csv, `${[header, first, first, second?.replace(/,2,/, ",5,")].join("\n")}\n`);
    expect(await problems(db, dir)).toEqual([
      { kind: "duplicate", line: 3, task: 1 },
      { kind: "unknown", line: 4, task: null },
      { kind: "missing", line: null, task: 1 },
    ]);
  });
});

describe("verify --fix on PostgreSQL", () => {
  const postgres = backends.find((backend) => backend.name === "postgres") as LedgerBackend;

  it("refuses while another coordinator holds the results writers' lock, and touches nothing", async () => {
    const { db, dir, csv } = await ranSweep(postgres);
    const [header, row1] = linesOf(csv);
    const planted = `${[header, row1, row1].join("\n")}\n`;
    writeFileSync(csv, planted);
    // A transaction takes a connection of its own: here, the other coordinator mid-drain.
    await db.transaction(async (tx) => {
      expect(await tryLockLedger(tx, LEDGER_LOCKS.results)).toBe(true);
      await expect(fixOutputDirs(db, [dir])).rejects.toThrow(ResultsBusyError);
    });
    expect(readFileSync(csv, "utf8")).toBe(planted);
    expect((await fixOutputDirs(db, [dir])).dirs[0]?.moved).toBe(1);
  });
});
