import { writeFileSync } from "node:fs";
import { stringify } from "csv-stringify/sync";
import { openLedgerReadOnly } from "../ledger/openLedger.js";
import { type ExportedResult, exportedResults, resultsTable } from "../results/exportResults.js";
import { EXIT, UsageError } from "./exitCodes.js";
import { stateDirFrom } from "./stateDir.js";

export interface ExportFlags {
  state?: string;
  format: string;
  output?: string;
}

export async function exportCommand(configs: string[], flags: ExportFlags): Promise<number> {
  if (flags.format !== "csv" && flags.format !== "jsonl") {
    throw new UsageError(`--format must be csv or jsonl, got "${flags.format}"`);
  }
  const stateDir = stateDirFrom(flags, configs);
  const db = openLedgerReadOnly(stateDir);
  if (!db) throw new UsageError(`no ledger in ${stateDir}: nothing to export (pass --state DIR?)`);
  try {
    const results: ExportedResult[] = [];
    for await (const result of exportedResults(db)) results.push(result);
    let text: string;
    if (flags.format === "jsonl") text = results.map((result) => `${JSON.stringify(result)}\n`).join("");
    else {
      const table = resultsTable(results);
      text = stringify([table.header, ...table.rows]);
    }
    if (flags.output) writeFileSync(flags.output, text);
    else process.stdout.write(text);
    return EXIT.ok;
  } finally {
    await db.close();
  }
}
