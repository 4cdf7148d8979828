import type { Db } from "../ledger/db.js";
import { succeededTaskPage } from "../ledger/reads/resultSources.js";
import { gitStateOf, type OomRun, oomRunOf } from "../ledger/resultRows.js";
import type { TaskUsage } from "../protocol/interfaces.js";
import type { Params } from "../sweep/types.js";
import { gitMetadata, metadataValues, resultTable } from "./columns.js";

export interface ExportedResult {
  task_id: number;
  phases: string[];
  output_dirs: string[];
  params: Params;
  metrics: Record<string, unknown>;
  /** Rounded to the millisecond, as in final_results.csv. */
  wall_seconds: number | null;
  /** Attempts that ran to an end (succeeded, failed or timed out), as in final_results.csv. */
  attempts: number;
  /** As sampled; null fields where nothing was measured (final_results.csv leaves them blank). */
  peak_rss_mb: number | null;
  gpu_util_mean: number | null;
  gpu_mem_peak_mb: number | null;
  energy_wh: number | null;
  host: string | null;
  gpu_ids: string | null;
  origin: string | null;
  /** on_oom's parameter, the value that succeeded and the out-of-memory retries; absent without on_oom. */
  oom?: OomRun;
  /** The provenance of its successful attempt, as final_results.csv's columns; null outside git. */
  git_commit: string | null;
  git_dirty: boolean | null;
  git_diff_sha256: string | null;
}

/** Every succeeded task of the sweep with its phases, parameters and metrics, from the ledger. */
export async function* exportedResults(db: Db): AsyncGenerator<ExportedResult> {
  const batch = 5000;
  for (let after = 0; ; ) {
    const rows = await succeededTaskPage(db, after, batch);
    if (rows.length === 0) return;
    for (const row of rows) {
      const params = JSON.parse(row.params_json) as Params;
      const oom = oomRunOf(row.policy_json, params, row.oom_value, row.oom_retries);
      const run = {
        wallSeconds: row.wall_seconds,
        attempts: Number(row.attempts),
        host: row.host,
        gpuIds: row.gpu_ids,
        usage: row.usage_json ? (JSON.parse(row.usage_json) as TaskUsage) : null,
      };
      // The same rounding and blanks as final_results.csv (metadataValues).
      const metadata = metadataValues(run);
      yield {
        task_id: row.id,
        phases: row.phases ? row.phases.split(",") : [],
        output_dirs: row.dirs ? row.dirs.split(",") : [],
        params,
        metrics: row.result_json ? (JSON.parse(row.result_json) as Record<string, unknown>) : {},
        wall_seconds: metadata.wall_seconds as number | null,
        attempts: run.attempts,
        peak_rss_mb: metadata.peak_rss_mb as number | null,
        gpu_util_mean: metadata.gpu_util_mean as number | null,
        gpu_mem_peak_mb: metadata.gpu_mem_peak_mb as number | null,
        energy_wh: metadata.energy_wh as number | null,
        host: row.host,
        gpu_ids: row.gpu_ids,
        origin: row.origin,
        ...(oom ? { oom } : {}),
        ...gitMetadata(gitStateOf(row)),
      };
    }
    after = (rows.at(-1) as { id: number }).id;
  }
}

/** A run with nothing but its on_oom columns to give. */
const NO_RUN = { wallSeconds: null, attempts: 0, host: null, gpuIds: null, usage: null };

/**
 * Flattens results into CSV columns: task_id, phases, then the columns of final_results.csv in
 * its order (parameters, metrics, wall_seconds, the usage columns, attempts, host, gpu_ids).
 * Numbers print in their shortest round-tripping form (String(number)), so a metric reads as the
 * task wrote it.
 */
export function resultsTable(results: readonly ExportedResult[]): { header: string[]; rows: string[][] } {
  return resultTable(
    ["task_id", "phases"],
    results.map((result) => ({
      leading: [result.task_id, result.phases.join(";")],
      params: result.params,
      metrics: result.metrics,
      // Already rounded and blanked as in final_results.csv (exportedResults); on_oom's columns as there.
      metadata: { ...result, ...(result.oom ? metadataValues({ ...NO_RUN, oom: result.oom }) : {}) },
    })),
  );
}
