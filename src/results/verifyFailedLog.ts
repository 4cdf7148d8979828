import { join } from "node:path";
import type { Db } from "../ledger/db.js";
import { knownTaskIds } from "../ledger/reads/verifySources.js";
import { CsvFileError, errorText } from "./csvFile.js";
import { type CsvRecords, readCsvRecords } from "./csvRecords.js";
import { FAILED_FILE } from "./failedLog.js";
import type { DirReport, VerifyProblem } from "./verify.js";

/** The state dir's failed_experiments.csv, judged, with what --fix moves aside. */
export interface FailedLogInspection {
  report: DirReport;
  csv: CsvRecords | null;
  foreign: Map<number, VerifyProblem>;
}

/**
 * The cheap consistency of `<state>/failed_experiments.csv`: every line names a task of the
 * ledger, and none is torn. A task logged there may have succeeded since (`retry`), and with
 * several coordinators each logs to its own state dir, so a failed task absent from this file
 * is no problem.
 */
export async function inspectFailedLog(db: Db, stateDir: string): Promise<FailedLogInspection> {
  const file = join(stateDir, FAILED_FILE);
  const foreign = new Map<number, VerifyProblem>();
  let csv: CsvRecords | null;
  try {
    csv = await readCsvRecords(file);
  } catch (error) {
    if (!(error instanceof CsvFileError)) throw error;
    const problem = { kind: "unreadable", file, line: null, task: null, detail: errorText(error) };
    return { report: { outputDir: stateDir, rows: 0, problems: [problem] }, csv: null, foreign };
  }
  if (!csv) return { report: { outputDir: stateDir, rows: 0, problems: [] }, csv, foreign };
  const column = csv.header.indexOf("task_id");
  // Not labsweep's log (no task_id column): nothing here to hold against the ledger.
  if (column === -1) return { report: { outputDir: stateDir, rows: 0, problems: [] }, csv: null, foreign };
  const idOf = (cells: string[]): number => Number(cells[column] ?? "");
  const known = await knownTaskIds(
    db,
    csv.rows.map((row) => idOf(row.cells)).filter((id) => Number.isSafeInteger(id)),
  );
  for (const row of csv.rows) {
    if (known.has(idOf(row.cells))) continue;
    const detail = `task_id ${JSON.stringify(row.cells[column] ?? "")} is no task of the ledger`;
    foreign.set(row.line, { kind: "unknown", file, line: row.line, task: null, detail });
  }
  if (csv.torn) {
    const detail = "a last line cut short, without its newline";
    foreign.set(csv.torn.line, { kind: "torn", file, line: csv.torn.line, task: null, detail });
  }
  const rows = csv.rows.length + (csv.torn ? 1 : 0);
  return { report: { outputDir: stateDir, rows, problems: [...foreign.values()] }, csv, foreign };
}
