import type { Db } from "./db.js";
import { recordEvent } from "./recordEvent.js";

/** An output dir whose results file could not be written on the writer's last try. */
export interface ResultDirError {
  outputDir: string;
  /** Why, as the writer saw it (the file and the system's reason). */
  error: string;
  /** When it first failed, and when it was last tried (epoch ms). */
  since: number;
  triedAt: number;
  /** Rows still owed to that dir's final_results.csv. */
  owedRows: number;
}

/**
 * Records that writing `outputDir`'s results failed. Returns true when this is news (the dir was
 * fine, or failed for another reason): only then is an event logged, so the dashboard refreshes
 * and the caller warns once, not on every retry.
 */
export async function recordDirError(
  db: Db,
  outputDir: string,
  error: string,
  now: number,
): Promise<boolean> {
  const before = await db.one<{ error: string }>(
    "SELECT error FROM result_dir_errors WHERE output_dir = $1",
    [outputDir],
  );
  if (before?.error === error) {
    await db.run("UPDATE result_dir_errors SET tried_at = $2 WHERE output_dir = $1", [outputDir, now]);
    return false;
  }
  await db.run(
    `INSERT INTO result_dir_errors (output_dir, error, since, tried_at) VALUES ($1, $2, $3, $3)
     ON CONFLICT (output_dir) DO UPDATE SET error = excluded.error, tried_at = excluded.tried_at`,
    [outputDir, error, now],
  );
  await recordEvent(db, now, "results_dir_failing", null, { outputDir, error });
  return true;
}

/** Forgets a dir's error after a write to it succeeded (an event says it recovered). */
export async function clearDirError(db: Db, outputDir: string, now: number): Promise<void> {
  const deleted = await db.run("DELETE FROM result_dir_errors WHERE output_dir = $1", [outputDir]);
  if (deleted.changes > 0) await recordEvent(db, now, "results_dir_recovered", null, { outputDir });
}

/** The dirs failing now, as a set: the writer clears only these after a good write. */
export async function failingDirs(db: Db): Promise<Set<string>> {
  const rows = await db.all<{ output_dir: string }>("SELECT output_dir FROM result_dir_errors");
  return new Set(rows.map((row) => row.output_dir));
}

/**
 * Every dir failing now, with how many rows it is owed. Readers that do not migrate (`status`)
 * may meet a ledger from before this table existed: that ledger has no failing dir.
 */
export async function resultDirErrors(db: Db): Promise<ResultDirError[]> {
  const exists = await db.one<{ yes: number }>(
    db.dialect === "sqlite"
      ? "SELECT 1 AS yes FROM sqlite_master WHERE type = 'table' AND name = 'result_dir_errors'"
      : "SELECT 1 AS yes WHERE to_regclass('result_dir_errors') IS NOT NULL",
  );
  if (!exists) return [];
  const rows = await db.all<{
    output_dir: string;
    error: string;
    since: number;
    tried_at: number;
    owed: number;
  }>(
    `SELECT e.output_dir, e.error, e.since, e.tried_at,
            (SELECT count(*) FROM result_rows r WHERE r.written = 0 AND r.output_dir = e.output_dir) AS owed
       FROM result_dir_errors e ORDER BY e.output_dir`,
  );
  return rows.map((row) => ({
    outputDir: row.output_dir,
    error: row.error,
    since: Number(row.since),
    triedAt: Number(row.tried_at),
    owedRows: Number(row.owed),
  }));
}
