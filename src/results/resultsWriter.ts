import { join } from "node:path";
import type { Db } from "../ledger/db.js";
import { markRowsWritten, type OwedRow, owedResultRows } from "../ledger/resultRows.js";
import { appendCsvRows, formatCell } from "./csvFile.js";
import { RESULTS_FILE } from "./resumeScan.js";
import { METADATA_COLUMNS } from "./rowMatcher.js";

/**
 * Drains the ledger's outbox of result rows into `{output_dir}/final_results.csv`. A row is
 * appended and fsynced before it is marked written; a crash in between leaves it owed, and the
 * resume scan at the next start finds it in the file, so it is never written twice.
 * Columns: `phase`, the parameters, the metrics, then run metadata.
 */
export async function writeOwedResults(db: Db): Promise<number> {
  let written = 0;
  for (;;) {
    const owed = await owedResultRows(db);
    if (owed.length === 0) return written;
    for (const [outputDir, rows] of groupByDir(owed)) {
      const header = headerFor(rows);
      await appendCsvRows(
        join(outputDir, RESULTS_FILE),
        header,
        rows.map((row) => cellsFor(row, header)),
      );
      await markRowsWritten(db, rows);
      written += rows.length;
    }
  }
}

function groupByDir(rows: OwedRow[]): Map<string, OwedRow[]> {
  const groups = new Map<string, OwedRow[]>();
  for (const row of rows) {
    const group = groups.get(row.outputDir);
    if (group) group.push(row);
    else groups.set(row.outputDir, [row]);
  }
  return groups;
}

function headerFor(rows: OwedRow[]): string[] {
  const params = new Set<string>();
  const metrics = new Set<string>();
  for (const row of rows) {
    for (const name of Object.keys(row.params)) params.add(name);
    for (const name of Object.keys(row.metrics)) if (!params.has(name)) metrics.add(name);
  }
  const reserved = new Set<string>(["phase", ...params, ...metrics]);
  return ["phase", ...params, ...metrics, ...METADATA_COLUMNS.filter((name) => !reserved.has(name))];
}

function cellsFor(row: OwedRow, header: string[]): string[] {
  const metadata: Record<string, unknown> = {
    wall_seconds: row.wallSeconds === null ? null : Math.round(row.wallSeconds * 1000) / 1000,
    peak_rss_mb: row.usage?.peak_rss_mb,
    gpu_util_mean: row.usage?.gpu_util_mean,
    gpu_mem_peak_mb: row.usage?.gpu_mem_peak_mb,
    energy_wh: row.usage?.energy_wh,
    attempts: row.attempts,
    host: row.host,
    gpu_ids: row.gpuIds,
  };
  return header.map((name) => {
    if (name === "phase") return row.phase;
    if (name in row.params) return formatCell(row.params[name]);
    if (name in row.metrics) return formatCell(row.metrics[name]);
    return formatCell(metadata[name]);
  });
}
