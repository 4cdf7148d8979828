import type { GitState } from "../protocol/interfaces.js";
import type { Db } from "./db.js";

/**
 * The snapshots table (migration 14): copies of config dirs that tasks run from (`snapshot:
 * true`). One current copy per config file; TASK_ROW_SQL gives a lease's task its config's.
 */
export interface SnapshotRow {
  id: number;
  config_file: string;
  dir: string;
  git_json: string | null;
  taken_at: number;
}

/** The current snapshot of each config file that has one, by config file. */
export async function currentSnapshots(db: Db): Promise<Map<string, SnapshotRow>> {
  const rows = await db.all<SnapshotRow>(
    "SELECT id, config_file, dir, git_json, taken_at FROM snapshots WHERE current = 1 ORDER BY id",
  );
  return new Map(rows.map((row) => [row.config_file, row]));
}

/**
 * Makes `dir` the config's current snapshot, in one transaction: tasks leased after it commits
 * run from it; the copy it replaces is kept until no attempt of the config runs (removableSnapshots).
 */
export async function recordSnapshot(
  db: Db,
  snapshot: { configFile: string; dir: string; git: GitState | null; now: number },
): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.run("UPDATE snapshots SET current = 0 WHERE config_file = $1 AND current = 1", [
      snapshot.configFile,
    ]);
    await tx.run("INSERT INTO snapshots (config_file, dir, git_json, taken_at) VALUES ($1, $2, $3, $4)", [
      snapshot.configFile,
      snapshot.dir,
      snapshot.git ? JSON.stringify(snapshot.git) : null,
      snapshot.now,
    ]);
  });
}

/** These config files no longer take snapshots: their tasks run from their dirs again. */
export async function retireSnapshots(db: Db, configFiles: readonly string[]): Promise<void> {
  if (configFiles.length === 0) return;
  await db.run(
    `UPDATE snapshots SET current = 0
      WHERE current = 1 AND config_file IN (${configFiles.map((_, i) => `$${i + 1}`).join(", ")})`,
    [...configFiles],
  );
}

/**
 * Replaced copies no attempt may still run from: no attempt of a task of their config is open
 * (one leased before the copy was replaced runs on from it).
 */
export async function removableSnapshots(db: Db): Promise<Array<{ id: number; dir: string }>> {
  return db.all<{ id: number; dir: string }>(
    `SELECT s.id, s.dir FROM snapshots s
      WHERE s.current = 0 AND s.removed_at IS NULL
        AND NOT EXISTS (SELECT 1 FROM attempts a JOIN tasks t ON t.id = a.task_id JOIN phases f ON f.name = t.phase
                         WHERE a.ended_at IS NULL AND f.config_file = s.config_file)
      ORDER BY s.id`,
  );
}

/** Every copy the ledger still names (current or not yet removed): the dirs not to clean up. */
export async function keptSnapshotDirs(db: Db): Promise<string[]> {
  const rows = await db.all<{ dir: string }>("SELECT dir FROM snapshots WHERE removed_at IS NULL");
  return rows.map((row) => row.dir);
}

export async function markSnapshotRemoved(db: Db, id: number, now: number): Promise<void> {
  await db.run("UPDATE snapshots SET removed_at = $2 WHERE id = $1", [id, now]);
}
