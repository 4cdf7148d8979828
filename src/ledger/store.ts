import { isAbsolute, join, resolve } from "node:path";
import { openPostgresDb } from "./postgresDb.js";
import { STORE_ENV } from "./storeEnv.js";

/** The ledger's file in a state dir when no store is named. */
export const LEDGER_FILE = "ledger.sqlite";

/** Where a ledger lives: a SQLite file (the default) or a PostgreSQL database. */
export type Store = { kind: "sqlite"; path: string } | { kind: "postgres"; url: string };

/** A --store / LABSWEEP_STORE value that names no usable store. The CLI exits 2. */
export class StoreError extends Error {
  override readonly name = "StoreError";
}

/** The environment variable that names the store when --store is not given. */
export { STORE_ENV };

/** --store's value, else $LABSWEEP_STORE, else undefined (the state dir's SQLite file). */
export function storeText(flag?: string): string | undefined {
  return flag || process.env[STORE_ENV] || undefined;
}

/**
 * Reads a store: `postgres://…` (or `postgresql://…`) opens PostgreSQL; `sqlite:PATH` or a plain
 * path opens that SQLite file; nothing means `<stateDir>/ledger.sqlite`. Throws StoreError for
 * anything else, naming `source` (the flag or variable it came from) and never the password.
 */
export function parseStore(text: string | undefined, stateDir: string, source = "--store"): Store {
  if (!text) return { kind: "sqlite", path: join(stateDir, LEDGER_FILE) };
  if (/^postgres(ql)?:/i.test(text)) {
    if (!URL.canParse(text))
      throw new StoreError(`${source}: not a valid PostgreSQL URL: ${redactUrl(text)}`);
    // No host (postgres:///db) is pg's default, the local server: allowed.
    return { kind: "postgres", url: text };
  }
  if (/^sqlite:/i.test(text)) {
    const path = text.slice("sqlite:".length).replace(/^\/\/(?=\/)/, "");
    if (!path) throw new StoreError(`${source}: sqlite: needs a file path, e.g. sqlite:/data/ledger.sqlite`);
    return { kind: "sqlite", path: resolve(path) };
  }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text);
  if (scheme)
    throw new StoreError(
      `${source}: unknown store ${scheme[1]}:// — use postgres://USER@HOST:PORT/DATABASE, sqlite:PATH or a file path`,
    );
  return { kind: "sqlite", path: isAbsolute(text) ? text : resolve(text) };
}

/** How a store is shown to people: a SQLite path, or the URL with its password masked. */
export function describeStore(store: Store): string {
  return store.kind === "sqlite" ? store.path : redactUrl(store.url);
}

/** The URL with any password replaced by `***` (also a `password=` query parameter). */
export function redactUrl(text: string): string {
  return text
    .replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/?#@]*:)[^@/?#]*@/i, "$1***@")
    .replace(/([?&]password=)[^&#]*/gi, "$1***");
}

/**
 * Connects once to a PostgreSQL store and runs nothing but `SELECT 1`, so an unreachable server,
 * a wrong database or bad credentials are reported before anything is written. SQLite stores need
 * no check. Throws StoreError naming `source`.
 */
export async function checkStore(store: Store, source = "--store"): Promise<void> {
  if (store.kind !== "postgres") return;
  const db = openPostgresDb(store.url, { max: 1, connectTimeoutMs: 10_000 });
  try {
    await db.one("SELECT 1 AS ok");
  } catch (error) {
    throw new StoreError(
      `${source}: cannot use the PostgreSQL store ${redactUrl(store.url)}: ${scrub((error as Error).message, store.url)}`,
    );
  } finally {
    await db.close().catch(() => undefined);
  }
}

/** Drops the password from a driver message, should one ever quote it. */
function scrub(message: string, url: string): string {
  let password = "";
  try {
    password = decodeURIComponent(new URL(url).password);
  } catch {
    // An unparsable URL was rejected by parseStore already.
  }
  return password ? message.split(password).join("***") : message;
}
