/**
 * What only the PostgreSQL adapter does (the port's common behaviour is in
 * ledger.backends.test.ts): a transaction that loses a deadlock runs again, a statement on a
 * table recreated since it was prepared still works, and a server that cannot be reached fails
 * the statement instead of hanging.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Db } from "../src/ledger/db.js";
import { openPostgresDb } from "../src/ledger/postgresDb.js";
import { usePostgres } from "./helpers/postgres.js";

const postgres = usePostgres();
const open: Db[] = [];
afterEach(async () => {
  for (const db of open.splice(0)) await db.close();
});

async function database(): Promise<Db> {
  const db = openPostgresDb(await postgres().createDatabase());
  open.push(db);
  return db;
}

/** Resolves when `check` holds, polling: for waiting on another transaction's progress. */
async function until(check: () => boolean): Promise<void> {
  for (let waited = 0; !check(); waited += 5) {
    if (waited > 10_000) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe("postgresDb", () => {
  it("runs a transaction that lost a deadlock again, so both sides commit", async () => {
    const db = await database();
    await db.run("CREATE TABLE pair (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)");
    await db.run("INSERT INTO pair (id, n) VALUES (1, 0), (2, 0)");
    let locked = 0;
    const runs: number[] = [];
    // Each locks one row, waits until the other has its row too, then wants the other's.
    const crosswise = (first: number, second: number) =>
      db.transaction(async (tx) => {
        runs.push(first);
        await tx.run("UPDATE pair SET n = n + 1 WHERE id = $1", [first]);
        locked++;
        await until(() => locked >= 2);
        await tx.run("UPDATE pair SET n = n + 1 WHERE id = $1", [second]);
      });
    await Promise.all([crosswise(1, 2), crosswise(2, 1)]);
    // One side lost and ran again (a retry can meet the other side crosswise once more under
    // load, and lose again); in the end each side committed once.
    expect(runs.length).toBeGreaterThanOrEqual(3);
    expect(await db.all("SELECT id, n FROM pair ORDER BY id")).toEqual([
      { id: 1, n: 2 },
      { id: 2, n: 2 },
    ]);
  });

  it("keeps prepared statements working across a temp table dropped and created again", async () => {
    const db = await database();
    for (let round = 1; round <= 3; round++) {
      const count = await db.transaction(async (tx) => {
        await tx.run("CREATE TEMP TABLE scratch (v BIGINT) ON COMMIT DROP");
        await tx.run("INSERT INTO scratch (v) VALUES ($1), ($2)", [round, round * 10]);
        return tx.one<{ total: number }>("SELECT sum(v) AS total FROM scratch WHERE v > $1", [0]);
      });
      expect(count).toEqual({ total: round * 11 });
    }
  });

  it("fails a statement on a server that cannot be reached", async () => {
    const db = openPostgresDb("postgres://nobody@127.0.0.1:1/none", { connectTimeoutMs: 2000 });
    open.push(db);
    await expect(db.one("SELECT 1")).rejects.toThrow(/ECONNREFUSED/);
    await expect(db.transaction(async (tx) => tx.one("SELECT 1"))).rejects.toThrow(/ECONNREFUSED/);
  });
});
