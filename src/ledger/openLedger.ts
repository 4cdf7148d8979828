import { existsSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { ensurePrivateDir, PRIVATE_DIR_MODE, tightenFile, touchPrivateFile } from "../files/privateFiles.js";
import type { Db } from "./db.js";
import { migrate } from "./migrate.js";
import { openPostgresDb } from "./postgresDb.js";
import { openSqliteDb } from "./sqliteDb.js";
import { describeStore, LEDGER_FILE, parseStore, STORE_ENV, type Store, storeText } from "./store.js";

export { LEDGER_FILE };

export interface OpenLedgerOptions {
  /**
   * Where the ledger lives: `postgres://…`, `sqlite:PATH` or a path. (Default: $LABSWEEP_STORE,
   * else `<stateDir>/ledger.sqlite`)
   */
  store?: string;
}

/** The store a state dir's ledger is in: the option, else $LABSWEEP_STORE, else the state dir's file. */
export function ledgerStore(stateDir: string, options: OpenLedgerOptions = {}): Store {
  const text = storeText(options.store);
  return parseStore(text, stateDir, options.store ? "--store" : STORE_ENV);
}

/** Opens the store's database without migrating it. */
export function openStoreDb(store: Store, options: { readonly?: boolean } = {}): Db {
  if (store.kind === "postgres") return openPostgresDb(store.url, { max: options.readonly ? 2 : 10 });
  if (!options.readonly) {
    mkdirSync(dirname(store.path), { recursive: true, mode: PRIVATE_DIR_MODE });
    // SQLite creates its file 0644 and gives -wal/-shm the file's mode: a 0600 file first.
    touchPrivateFile(store.path);
    for (const suffix of ["-wal", "-shm"]) tightenFile(`${store.path}${suffix}`);
  }
  return openSqliteDb(store.path, options);
}

/**
 * Opens (creating and migrating if needed) the ledger of a state dir: a SQLite file in it, or
 * the store named by the option or $LABSWEEP_STORE. The state dir itself is created either way
 * (tokens, logs and locks live there).
 */
export async function openLedger(stateDir: string, options: OpenLedgerOptions = {}): Promise<Db> {
  ensurePrivateDir(stateDir);
  const store = ledgerStore(stateDir, options);
  const db = openStoreDb(store);
  try {
    await migrate(db);
  } catch (error) {
    await db.close().catch(() => undefined);
    throw new Error(`cannot prepare the ledger in ${describeStore(store)}`, { cause: error });
  }
  return db;
}

/**
 * Opens an existing ledger for reading only (status from another terminal); null if a SQLite
 * ledger does not exist. A PostgreSQL store is always returned: it connects on first use.
 */
export function openLedgerReadOnly(stateDir: string, options: OpenLedgerOptions = {}): Db | null {
  const store = ledgerStore(stateDir, options);
  if (store.kind === "sqlite" && !existsSync(store.path)) return null;
  return openStoreDb(store, { readonly: true });
}
