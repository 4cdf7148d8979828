import type { Db } from "./db.js";
import { oweRowsSql } from "./resultRows.js";

/**
 * Owes these tasks' rows to an output dir again: `labsweep verify --fix` found them missing
 * from its CSV (deleted by hand, or moved aside as foreign), whatever the ledger believed. The
 * results writer then writes them exactly as it writes any owed row.
 */
export async function oweRowsAgain(db: Db, outputDir: string, taskIds: readonly number[]): Promise<void> {
  if (taskIds.length === 0) return;
  await db.transaction(async (tx) => {
    for (let start = 0; start < taskIds.length; start += 500) {
      const slice = taskIds.slice(start, start + 500);
      const list = slice.map((_, i) => `$${i + 2}`).join(", ");
      // A row never owed (its placement came after the task succeeded) is owed as a sync owes it.
      await tx.run(oweRowsSql(`p.output_dir = $1 AND p.task_id IN (${list})`), [outputDir, ...slice]);
      await tx.run(`UPDATE result_rows SET written = 0 WHERE output_dir = $1 AND task_id IN (${list})`, [
        outputDir,
        ...slice,
      ]);
    }
  });
}
