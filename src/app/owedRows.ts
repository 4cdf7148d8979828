import type { Db } from "../ledger/db.js";
import { resultDirErrors } from "../ledger/resultDirErrors.js";
import { owedRowCount } from "../ledger/resultRows.js";

/**
 * Says which result rows are still owed to their CSV files, dir by dir with the reason, and
 * returns how many: `run` and `serve --exit-when-done` exit 1 while any is owed, since a sweep
 * whose results are not all on disk is not done.
 */
export async function reportOwedRows(db: Db, write: (text: string) => void): Promise<number> {
  const owed = await owedRowCount(db);
  if (owed === 0) return 0;
  const failing = await resultDirErrors(db);
  for (const dir of failing)
    write(`labsweep: ${dir.owedRows} result rows not written to ${dir.outputDir}: ${dir.error}\n`);
  const elsewhere = owed - failing.reduce((sum, dir) => sum + dir.owedRows, 0);
  if (elsewhere > 0) write(`labsweep: ${elsewhere} more result rows not written yet\n`);
  write(
    `labsweep: ${owed} result rows are owed to final_results.csv files; they stay in the ledger and are written as soon as their dir can be written (by a running \`labsweep serve\`, or the next \`labsweep run\`)\n`,
  );
  return owed;
}
