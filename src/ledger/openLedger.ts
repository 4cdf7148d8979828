import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Db } from "./db.js";
import { migrate } from "./migrate.js";
import { openSqliteDb } from "./sqliteDb.js";

export const LEDGER_FILE = "ledger.sqlite";

/** Opens (creating and migrating if needed) the SQLite ledger in a state directory. */
export async function openLedger(stateDir: string): Promise<Db> {
  mkdirSync(stateDir, { recursive: true });
  const db = openSqliteDb(join(stateDir, LEDGER_FILE));
  try {
    await migrate(db);
  } catch (error) {
    await db.close();
    throw new Error(`cannot prepare the ledger in ${stateDir}`, { cause: error });
  }
  return db;
}

/** Opens an existing ledger for reading only (status from another terminal); null if there is none. */
export function openLedgerReadOnly(stateDir: string): Db | null {
  const path = join(stateDir, LEDGER_FILE);
  if (!existsSync(path)) return null;
  return openSqliteDb(path, { readonly: true });
}
