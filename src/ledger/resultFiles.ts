import type { Db } from "./db.js";

/**
 * A results file as the writer last left it: its size and modification time (nanoseconds, as
 * text: too large for a number). A file that differs was changed by someone else.
 */
export interface FileIdentity {
  size: number;
  mtimeNs: string;
}

/** The identity recorded for `path` by the last write, or undefined when none was. */
export async function recordedFile(db: Db, path: string): Promise<FileIdentity | undefined> {
  const row = await db.one<{ size: number; mtime_ns: string }>(
    "SELECT size, mtime_ns FROM result_files WHERE path = $1",
    [path],
  );
  return row && { size: Number(row.size), mtimeNs: row.mtime_ns };
}

/** Records what a write left `path` as. */
export async function recordFile(db: Db, path: string, identity: FileIdentity): Promise<void> {
  await db.run(
    `INSERT INTO result_files (path, size, mtime_ns) VALUES ($1, $2, $3)
     ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns`,
    [path, identity.size, identity.mtimeNs],
  );
}
