import { Database, type SqliteDatabase } from "../ledger/sqliteDriver.js";
import { touchPrivateFile } from "./privateFiles.js";

/** A held process lock; `release` ends it (so does the process's death, even by SIGKILL). */
export interface ProcessLock {
  release(): void;
}

/**
 * Every lock held: a connection nothing references is closed by the garbage collector, which
 * would free the lock while its holder still counts on it.
 */
const HELD = new Set<SqliteDatabase>();

/**
 * An exclusive lock on `path` that the kernel keeps: SQLite takes POSIX fcntl locks, which two
 * processes cannot both hold and which the kernel drops when the holder dies (kill -9 and power
 * loss included). Node has no flock, and a native module only for this would be one more thing
 * to build on every platform; better-sqlite3 is here already. The file is an empty SQLite
 * database held in an exclusive transaction for as long as the connection stays open. Null when
 * another process holds it (never waits).
 */
export function tryExclusiveLock(path: string): ProcessLock | null {
  touchPrivateFile(path);
  // timeout 0: a held lock answers SQLITE_BUSY at once instead of after better-sqlite3's 5 s.
  const connection = new Database(path, { timeout: 0 });
  try {
    // Rollback journal (not WAL, whose readers would not be shut out), locks kept until close.
    connection.pragma("journal_mode = DELETE");
    connection.pragma("locking_mode = EXCLUSIVE");
    connection.exec("BEGIN EXCLUSIVE");
  } catch (error) {
    connection.close();
    if ((error as { code?: string }).code?.startsWith("SQLITE_BUSY")) return null;
    throw error;
  }
  let held = true;
  HELD.add(connection);
  return {
    release() {
      if (!held) return;
      held = false;
      HELD.delete(connection);
      connection.close();
    },
  };
}
