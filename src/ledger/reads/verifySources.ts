import type { Db } from "../db.js";

/** A task placed in an output dir, as `labsweep verify` judges that dir's rows. */
export interface DirTaskRow {
  id: number;
  params_json: string;
  state: string;
  /** Its metrics, when it succeeded. */
  result_json: string | null;
  /** 1 when the task and one of its placements in this dir are active: its row is owed here. */
  placed: number;
  /** 0 while its row here is owed (not yet written), 1 once written, null if never owed. */
  written: number | null;
}

/**
 * Every task ever placed in an output dir, also those no config lists any more: their rows
 * are still explained by the ledger, though no longer owed.
 */
export async function tasksOfDir(db: Db, outputDir: string): Promise<DirTaskRow[]> {
  return db.all<DirTaskRow>(
    `SELECT t.id, t.params_json, t.state,
            CASE WHEN t.state = 'succeeded' THEN t.result_json END AS result_json,
            CASE WHEN t.active = 1 AND EXISTS (SELECT 1 FROM placements q
                   WHERE q.task_id = t.id AND q.output_dir = $1 AND q.active = 1) THEN 1 ELSE 0 END AS placed,
            r.written
       FROM tasks t LEFT JOIN result_rows r ON r.task_id = t.id AND r.output_dir = $1
      WHERE t.id IN (SELECT task_id FROM placements WHERE output_dir = $1)
      ORDER BY t.id`,
    [outputDir],
  );
}

/** Those of these task ids the ledger knows. */
export async function knownTaskIds(db: Db, taskIds: readonly number[]): Promise<Set<number>> {
  const known = new Set<number>();
  for (let start = 0; start < taskIds.length; start += 500) {
    const slice = taskIds.slice(start, start + 500);
    const rows = await db.all<{ id: number }>(
      `SELECT id FROM tasks WHERE id IN (${slice.map((_, i) => `$${i + 1}`).join(", ")})`,
      slice,
    );
    for (const row of rows) known.add(Number(row.id));
  }
  return known;
}
