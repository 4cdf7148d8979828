import type { DeclaredArtifact } from "../protocol/artifacts.js";
import type { Db } from "./db.js";
import type { ArtifactRow } from "./reads/artifacts.js";

/**
 * A success's artifacts at its finish: whether the files it declares are stored as its own, and,
 * once it is recorded, the rows of other attempts it leaves behind. Both run in the finish's
 * transaction, under its lock on the task row (the one an upload's supersedeArtifacts takes), so
 * no upload of another attempt slips between the check and the record.
 */

/** A stored artifact as the check reads it. */
export type HeldArtifact = Pick<ArtifactRow, "task_id" | "attempt_id" | "path" | "sha256">;

/** The artifacts stored for a task, whichever attempt's. */
export function storedArtifacts(tx: Db, taskId: number): Promise<HeldArtifact[]> {
  return tx.all<HeldArtifact>("SELECT task_id, attempt_id, path, sha256 FROM artifacts WHERE task_id = $1", [
    taskId,
  ]);
}

/** PostgreSQL, for a batch of reports: the artifacts stored for any of `taskIds`. */
export function storedArtifactsOf(tx: Db, taskIds: number[]): Promise<HeldArtifact[]> {
  return tx.all<HeldArtifact>(
    "SELECT task_id, attempt_id, path, sha256 FROM artifacts WHERE task_id = ANY($1::bigint[])",
    [taskIds],
  );
}

/**
 * Why `attemptId`'s declared artifacts are not all stored as its own with their SHA-256 (another
 * attempt's upload superseded them), or null when they are. `stored`: the task's rows.
 */
export function unheldArtifacts(
  attemptId: number,
  declared: readonly DeclaredArtifact[],
  stored: readonly HeldArtifact[],
): string | null {
  const byPath = new Map(stored.map((row) => [row.path, row]));
  for (const file of declared) {
    const row = byPath.get(file.path);
    const name = JSON.stringify(file.path);
    if (!row) return `its artifact ${name} is not stored (another attempt's upload superseded it)`;
    if (row.attempt_id !== attemptId) return `its artifact ${name} was replaced by another attempt's upload`;
    if (row.sha256 !== file.sha256) return `its artifact ${name} is stored with another SHA-256`;
  }
  return null;
}

/**
 * A success was recorded: the rows of the task's other attempts go, in the same transaction, and
 * are returned for the coordinator to delete their files after the commit (a crash between leaves
 * files no row names, which `labsweep verify` reports and `--fix` moves aside).
 */
export function discardOtherArtifacts(tx: Db, taskId: number, attemptId: number): Promise<ArtifactRow[]> {
  return tx.all<ArtifactRow>("DELETE FROM artifacts WHERE task_id = $1 AND attempt_id <> $2 RETURNING *", [
    taskId,
    attemptId,
  ]);
}
