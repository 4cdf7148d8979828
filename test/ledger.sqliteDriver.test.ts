/**
 * The SQLite driver is the build that is safe on the running Node: better-sqlite3 12.x aborts on
 * Node 24.19+ when a garbage collection frees a statement, so Node 22 and later load 13.x (the
 * optional `better-sqlite3-v13`), and Node 20, where 13.x's binary crashes, loads 12.x.
 */
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { Database, sqliteDriverModule } from "../src/ledger/sqliteDriver.js";

const require = createRequire(import.meta.url);
const major = Number(process.versions.node.split(".")[0]);

describe("the SQLite driver", () => {
  it("is better-sqlite3 13 on Node 22 and later, 12 on Node 20", () => {
    const expected = major >= 22 ? "better-sqlite3-v13" : "better-sqlite3";
    expect(sqliteDriverModule).toBe(expected);
    const version = (require(`${expected}/package.json`) as { version: string }).version;
    expect(version.split(".")[0]).toBe(major >= 22 ? "13" : "12");
  });

  it("survives statements being garbage collected while the process idles", async () => {
    const db = new Database(":memory:");
    // Thousands of statements left for the collector; on 12.x under Node 24.19+ the idle
    // collection that frees them aborts the process.
    for (let i = 0; i < 5000; i++) db.prepare(`SELECT ${i} AS v`).get();
    db.close();
    (globalThis as { gc?: () => void }).gc?.();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(db.open).toBe(false);
  });
});
