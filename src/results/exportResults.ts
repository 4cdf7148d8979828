import type { Db } from "../ledger/db.js";
import type { Params } from "../sweep/types.js";
import { formatCell } from "./csvFile.js";

export interface ExportedResult {
  task_id: number;
  phases: string[];
  output_dirs: string[];
  params: Params;
  metrics: Record<string, unknown>;
  wall_seconds: number | null;
  host: string | null;
  gpu_ids: string | null;
  origin: string | null;
}

/** Every succeeded task of the sweep with its phases, parameters and metrics, from the ledger. */
export async function* exportedResults(db: Db): AsyncGenerator<ExportedResult> {
  const batch = 5000;
  for (let after = 0; ; ) {
    const rows = await db.all<{
      id: number;
      params_json: string;
      result_json: string | null;
      wall_seconds: number | null;
      host: string | null;
      gpu_ids: string | null;
      origin: string | null;
      phases: string | null;
      dirs: string | null;
    }>(
      `SELECT t.id, t.params_json, t.result_json, t.wall_seconds, t.host, t.gpu_ids, t.origin,
              (SELECT group_concat(DISTINCT phase) FROM placements WHERE task_id = t.id AND active = 1) AS phases,
              (SELECT group_concat(DISTINCT output_dir) FROM placements WHERE task_id = t.id AND active = 1) AS dirs
         FROM tasks t WHERE t.state = 'succeeded' AND t.active = 1 AND t.id > $1 ORDER BY t.id LIMIT $2`,
      [after, batch],
    );
    if (rows.length === 0) return;
    for (const row of rows) {
      yield {
        task_id: row.id,
        phases: row.phases ? row.phases.split(",") : [],
        output_dirs: row.dirs ? row.dirs.split(",") : [],
        params: JSON.parse(row.params_json) as Params,
        metrics: row.result_json ? (JSON.parse(row.result_json) as Record<string, unknown>) : {},
        wall_seconds: row.wall_seconds,
        host: row.host,
        gpu_ids: row.gpu_ids,
        origin: row.origin,
      };
    }
    after = (rows.at(-1) as { id: number }).id;
  }
}

/** Flattens results into CSV columns: task_id, phases, parameters, metrics, metadata. */
export function resultsTable(results: readonly ExportedResult[]): { header: string[]; rows: string[][] } {
  const params = new Set<string>();
  const metrics = new Set<string>();
  for (const result of results) {
    for (const name of Object.keys(result.params)) params.add(name);
    for (const name of Object.keys(result.metrics)) if (!params.has(name)) metrics.add(name);
  }
  const header = ["task_id", "phases", ...params, ...metrics, "wall_seconds", "host", "gpu_ids"];
  const rows = results.map((result) => [
    String(result.task_id),
    result.phases.join(";"),
    ...[...params].map((name) => formatCell(result.params[name])),
    ...[...metrics].map((name) => formatCell(result.metrics[name])),
    formatCell(result.wall_seconds),
    formatCell(result.host),
    formatCell(result.gpu_ids),
  ]);
  return { header, rows };
}
