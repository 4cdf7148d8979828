import { createRequire } from "node:module";
import type BetterSqlite3 from "better-sqlite3";

/**
 * The better-sqlite3 build for this Node. Up to 12.x its objects derive from node::ObjectWrap,
 * whose destructor on Node 24.19 and later aborts the process (`Assertion failed: (env) !=
 * nullptr`) when a garbage collection outside JavaScript frees a statement — at any moment, not
 * only at exit. 13.x is built on Node-API and is immune, but needs Node 22 (its prebuilt binary
 * crashes on Node 20). So package.json installs both: 13.x as the optional `better-sqlite3-v13`
 * (prebuilt, nothing to compile), 12.x as `better-sqlite3` (built from source, for Node 20). The
 * two share one API.
 */
export type SqliteDatabase = BetterSqlite3.Database;
export type SqliteStatement = BetterSqlite3.Statement;
type DatabaseConstructor = typeof BetterSqlite3;

const require = createRequire(import.meta.url);

function load(): { Database: DatabaseConstructor; module: string } {
  const major = Number(process.versions.node.split(".")[0]);
  if (major >= 22) {
    try {
      return { Database: require("better-sqlite3-v13") as DatabaseConstructor, module: "better-sqlite3-v13" };
    } catch (error) {
      // Not installed (an optional dependency a package manager skipped): 12.x still runs on
      // Node 22 and on 24 before 24.19.
      if ((error as { code?: string }).code !== "MODULE_NOT_FOUND") throw error;
    }
  }
  return { Database: require("better-sqlite3") as DatabaseConstructor, module: "better-sqlite3" };
}

const loaded = load();

/** better-sqlite3's Database class, from the build that is safe on this Node. */
export const Database: DatabaseConstructor = loaded.Database;

/** Which package `Database` came from (tests and `labsweep doctor` may say). */
export const sqliteDriverModule: string = loaded.module;

/**
 * The build's compiled addon, for `new Database(path, { nativeBinding })`: left to itself
 * better-sqlite3 finds it through the `bindings` package, which stats a dozen candidate paths on
 * every start (~10 ms of each command). Undefined where it is not at the usual place: then
 * `bindings` searches as before.
 */
export const nativeBinding: string | undefined = addonPath(loaded.module);

function addonPath(module: string): string | undefined {
  try {
    return require.resolve(`${module}/build/Release/better_sqlite3.node`);
  } catch {
    return undefined;
  }
}
