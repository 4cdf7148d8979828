import type { ResultDirError } from "../ledger/resultDirErrors.js";

// `run` and `serve` say which rows are owed the same way: the report is the app's.
export { reportOwedRows } from "../app/owedRows.js";

/** `status`'s line for a dir whose results cannot be written (local and --server alike). */
export function resultErrorLine(dir: ResultDirError): string {
  return `cannot write results to ${dir.outputDir} (${dir.owedRows} rows owed; failing since ${new Date(dir.since).toISOString()}): ${dir.error}\n`;
}
