/**
 * The results writer writes every row exactly once, also when a writer died between its append
 * and its commit (the file then holds rows the ledger still owes), and when two coordinators on
 * one PostgreSQL ledger drain at the same moment. Real ledgers, real files.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { afterEach, describe, expect, it } from "vitest";
import { claimTask } from "../src/ledger/claimTask.js";
import type { Db } from "../src/ledger/db.js";
import { finishAttempt } from "../src/ledger/finishAttempt.js";
import { owedResultRows } from "../src/ledger/resultRows.js";
import { syncSweep } from "../src/ledger/syncSweep.js";
import { appendCsvRows } from "../src/results/csvFile.js";
import { writeOwedResults, writeOwedResultsOnce } from "../src/results/resultsWriter.js";
import { loadSweep } from "../src/sweep/loadSweep.js";
import { type LedgerBackend, useLedgerBackends } from "./helpers/postgres.js";

const backends = useLedgerBackends();
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function setup(backend: LedgerBackend, count: number) {
  const root = mkdtempSync(join(tmpdir(), "labsweep-once-"));
  dirs.push(root);
  const { db, store, stateDir } = await backend.open();
  const xs = Array.from({ length: count }, (_, i) => i + 1).join(", ");
  const text = `command: run {x}\nmain:\n  output_dir: out\n  combinations:\n    - x: [${xs}]\n`;
  await syncSweep(db, loadSweep([{ file: join(root, "sweep.yaml"), text }]), 1000);
  return { db, store, stateDir, csv: join(root, "out", "final_results.csv") };
}

/** Claims the next task and records its success (metric y = 10·x). */
async function succeedNext(db: Db): Promise<void> {
  const claim = await claimTask(db, {
    worker: "w",
    host: "h",
    now: 2000,
    leaseMs: 60_000,
    fits: () => ({ gpuIds: [] }),
  });
  if (!claim) throw new Error("nothing to claim");
  const x = Number(claim.task.params.x);
  await finishAttempt(
    db,
    claim.attemptId,
    { kind: "succeeded", metrics: { y: 10 * x }, wallSeconds: 1 },
    3000,
  );
}

function xsIn(csv: string): number[] {
  const rows = parse(readFileSync(csv), { columns: true }) as Array<Record<string, string>>;
  return rows.map((row) => Number(row.x)).sort((a, b) => a - b);
}

describe.each(backends)("the results writer on $name", (backend) => {
  it("finds rows a writer appended but never recorded, and does not write them again", async () => {
    const { db, csv } = await setup(backend, 3);
    await succeedNext(db);
    await succeedNext(db);
    expect(await writeOwedResults(db)).toBe(2);
    expect(xsIn(csv)).toEqual([1, 2]);

    // A writer appends task 3's row and dies before its commit: the file has it, the ledger owes it.
    await succeedNext(db);
    const [owed] = await owedResultRows(db);
    expect(owed?.taskId).toBe(3);
    await appendCsvRows(csv, ["phase", "x", "y"], [["main", "3", "30"]]);

    expect(await writeOwedResults(db)).toBe(0);
    expect(xsIn(csv)).toEqual([1, 2, 3]);
    expect(await owedResultRows(db)).toEqual([]);
  });

  it("appends without reading when the file is as its last recorded write left it", async () => {
    const { db, csv } = await setup(backend, 2);
    await succeedNext(db);
    await writeOwedResults(db);
    await succeedNext(db);
    expect(await writeOwedResults(db)).toBe(1);
    expect(xsIn(csv)).toEqual([1, 2]);
  });

  if (backend.name === "postgres")
    it("lets one of two coordinators draining at once write each row; the other stands aside", async () => {
      const { db, store, stateDir, csv } = await setup(backend, 40);
      for (let i = 0; i < 40; i++) await succeedNext(db);
      const other = await backend.reopen(store, stateDir);
      const results = await Promise.all([writeOwedResultsOnce(db), writeOwedResultsOnce(other)]);
      const written = results.reduce<number>((sum, n) => sum + (n?.written ?? 0), 0);
      // Either both ran one after the other (the second found nothing owed) or one stood aside.
      expect(written).toBe(40);
      expect(await writeOwedResults(other)).toBe(0);
      const xs = xsIn(csv);
      expect(xs).toHaveLength(40);
      expect(new Set(xs).size).toBe(40);
    });
});
