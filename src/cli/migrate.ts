import { migrate, schemaVersion } from "../ledger/migrate.js";
import { ledgerStore, openStoreDb } from "../ledger/openLedger.js";
import { checkStore, describeStore, parseStore, STORE_ENV, StoreError, storeText } from "../ledger/store.js";
import { EXIT, UsageError } from "./exitCodes.js";
import { stateDirFrom } from "./stateDir.js";

export interface MigrateFlags {
  state?: string;
  store?: string;
  json?: boolean;
}

/**
 * Runs before a command that has --store: checks the store it names (the flag, else
 * $LABSWEEP_STORE) — a malformed URL or a PostgreSQL server that cannot be reached is bad input
 * (exit 2), reported before anything is written and without the password — and hands it to the
 * ledger through $LABSWEEP_STORE, which every ledger opening reads. A command sent to a
 * coordinator (--server) opens no ledger here, so it checks nothing.
 */
export async function applyStoreOption(flags: { store?: string; server?: string }): Promise<void> {
  const flag = flags.store;
  const text = storeText(flag);
  if (!text || flags.server) return;
  const source = flag ? "--store" : STORE_ENV;
  try {
    await checkStore(parseStore(text, process.cwd(), source), source);
  } catch (error) {
    if (error instanceof StoreError) throw new UsageError(error.message, { cause: error });
    throw error;
  }
  process.env[STORE_ENV] = text;
}

/** `labsweep migrate`: applies the store's pending migrations and prints their versions. */
export async function migrateCommand(configs: string[], flags: MigrateFlags): Promise<number> {
  const store = ledgerStore(stateDirFrom(flags, configs), { store: flags.store });
  const db = openStoreDb(store);
  try {
    const applied = await migrate(db);
    const current = await schemaVersion(db);
    if (flags.json) {
      process.stdout.write(`${JSON.stringify({ store: describeStore(store), applied, version: current })}\n`);
    } else if (applied.length > 0) {
      process.stdout.write(
        `applied migrations ${applied.join(", ")} to ${describeStore(store)} (now at version ${current})\n`,
      );
    } else {
      process.stdout.write(`${describeStore(store)} is up to date (version ${current})\n`);
    }
    return EXIT.ok;
  } finally {
    await db.close();
  }
}
