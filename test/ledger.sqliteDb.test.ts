import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Db } from "../src/ledger/db.js";
import { openSqliteDb } from "../src/ledger/sqliteDb.js";

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

function freshPath(): string {
  const dir = mkdtempSync(join(tmpdir(), "labsweep-sqlite-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, "test.sqlite");
}

function open(path: string, options: { readonly?: boolean } = {}): Db {
  const db = openSqliteDb(path, options);
  cleanup.push(() => db.close());
  return db;
}

async function withTable(): Promise<{ db: Db; path: string }> {
  const path = freshPath();
  const db = open(path);
  await db.run("CREATE TABLE t (id INTEGER PRIMARY KEY, a, b, c)");
  return { db, path };
}

const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 1));

describe("sqliteDb: $n placeholders", () => {
  it("binds $n in order", async () => {
    const { db } = await withTable();
    await db.run("INSERT INTO t (id, a, b) VALUES ($1, $2, $3)", [1, "x", 2.5]);
    expect(await db.one("SELECT id, a, b FROM t")).toEqual({ id: 1, a: "x", b: 2.5 });
  });

  it("binds a repeated $n each time it appears", async () => {
    const { db } = await withTable();
    await db.run("INSERT INTO t (id, a, b, c) VALUES ($1, $2, $2, $2)", [1, "same"]);
    expect(await db.one("SELECT a, b, c FROM t")).toEqual({ a: "same", b: "same", c: "same" });
    expect(await db.one("SELECT $1 || '-' || $1 AS twice", ["ab"])).toEqual({ twice: "ab-ab" });
  });

  it("binds $n written out of order, by number not by position", async () => {
    const { db } = await withTable();
    await db.run("INSERT INTO t (a, b, c, id) VALUES ($3, $1, $2, $4)", ["one", "two", "three", 7]);
    expect(await db.one("SELECT id, a, b, c FROM t")).toEqual({ id: 7, a: "three", b: "one", c: "two" });
    expect(await db.one("SELECT $2 AS second, $1 AS first, $2 - $1 AS diff", [10, 25])).toEqual({
      second: 25,
      first: 10,
      diff: 15,
    });
  });

  it("supports $10 and beyond (multi-digit numbers)", async () => {
    const { db } = await withTable();
    const params = Array.from({ length: 12 }, (_, index) => index + 1);
    const row = await db.one<{ x: number; y: number }>("SELECT $12 AS x, $10 + $1 AS y", params);
    expect(row).toEqual({ x: 12, y: 11 });
  });

  it("reuses a prepared statement with new arguments", async () => {
    const { db } = await withTable();
    for (let id = 1; id <= 3; id++) await db.run("INSERT INTO t (id, a) VALUES ($1, $2)", [id, `v${id}`]);
    expect(await db.all("SELECT id, a FROM t ORDER BY id")).toEqual([
      { id: 1, a: "v1" },
      { id: 2, a: "v2" },
      { id: 3, a: "v3" },
    ]);
  });

  it("binds booleans as 1/0 and undefined (and missing arguments) as NULL", async () => {
    const { db } = await withTable();
    await db.run("INSERT INTO t (id, a, b, c) VALUES ($1, $2, $3, $4)", [1, true, false, undefined]);
    await db.run("INSERT INTO t (id, a, b, c) VALUES ($1, $2, $3, $4)", [2, null]);
    expect(await db.all("SELECT id, a, b, c FROM t ORDER BY id")).toEqual([
      { id: 1, a: 1, b: 0, c: null },
      { id: 2, a: null, b: null, c: null },
    ]);
    expect(await db.one("SELECT count(*) AS n FROM t WHERE a = $1", [true])).toEqual({ n: 1 });
  });

  it("makes rows as objects named by their columns; a repeated name keeps its last value", async () => {
    const { db } = await withTable();
    await db.run("INSERT INTO t (id, a, b) VALUES (1, 'x', NULL)");
    expect(await db.one("SELECT t.*, 7 AS a FROM t")).toEqual({ id: 1, a: 7, b: null, c: null });
    expect(await db.all("SELECT id, a FROM t UNION ALL SELECT 2, 'y'")).toEqual([
      { id: 1, a: "x" },
      { id: 2, a: "y" },
    ]);
    expect(await db.one('SELECT 1 AS "a b", 2 AS "quote""d"')).toEqual({ "a b": 1, 'quote"d': 2 });
    expect(await db.one("INSERT INTO t (id) VALUES (5) RETURNING id, a")).toEqual({ id: 5, a: null });
  });

  it("a prepared SELECT * sees columns another process added since", async () => {
    const { db, path } = await withTable();
    await db.run("INSERT INTO t (id, a) VALUES (1, 'x')");
    expect(await db.one("SELECT * FROM t")).toEqual({ id: 1, a: "x", b: null, c: null });
    const other = open(path);
    await other.run("ALTER TABLE t ADD COLUMN d DEFAULT 'new'");
    expect(await db.one("SELECT * FROM t")).toEqual({ id: 1, a: "x", b: null, c: null, d: "new" });
  });

  it("one() is undefined without a row; run() reports changes", async () => {
    const { db } = await withTable();
    expect(await db.one("SELECT * FROM t WHERE id = $1", [1])).toBeUndefined();
    await db.run("INSERT INTO t (id, a) VALUES (1, 'a'), (2, 'b'), (3, 'c')");
    expect(await db.run("UPDATE t SET b = $1 WHERE id >= $2", ["x", 2])).toEqual({ changes: 2 });
  });
});

describe("sqliteDb: transactions", () => {
  it("commits when the work resolves and returns its value", async () => {
    const { db } = await withTable();
    const value = await db.transaction(async (tx) => {
      await tx.run("INSERT INTO t (id, a) VALUES (1, 'a')");
      await tick();
      await tx.run("INSERT INTO t (id, a) VALUES (2, 'b')");
      return "done";
    });
    expect(value).toBe("done");
    expect(await db.one("SELECT count(*) AS n FROM t")).toEqual({ n: 2 });
  });

  it("rolls everything back when the work throws, and rethrows", async () => {
    const { db, path } = await withTable();
    await db.run("INSERT INTO t (id, a) VALUES (1, 'before')");
    const failure = db.transaction(async (tx) => {
      await tx.run("INSERT INTO t (id, a) VALUES (2, 'inside')");
      await tx.run("UPDATE t SET a = 'changed' WHERE id = 1");
      await tick();
      throw new Error("boom");
    });
    await expect(failure).rejects.toThrow("boom");
    expect(await db.all("SELECT id, a FROM t ORDER BY id")).toEqual([{ id: 1, a: "before" }]);
    // Nothing reached the file either: a second connection sees the same.
    const other = open(path);
    expect(await other.all("SELECT id, a FROM t ORDER BY id")).toEqual([{ id: 1, a: "before" }]);
    // And the connection is usable afterwards.
    await db.transaction(async (tx) => tx.run("INSERT INTO t (id, a) VALUES (3, 'after')"));
    expect(await db.one("SELECT count(*) AS n FROM t")).toEqual({ n: 2 });
  });

  it("rolls back when a statement inside fails (constraint)", async () => {
    const { db } = await withTable();
    await db.run("INSERT INTO t (id) VALUES (1)");
    await expect(
      db.transaction(async (tx) => {
        await tx.run("INSERT INTO t (id) VALUES (2)");
        await tx.run("INSERT INTO t (id) VALUES (1)");
      }),
    ).rejects.toThrow(/UNIQUE/);
    expect(await db.all("SELECT id FROM t")).toEqual([{ id: 1 }]);
  });

  it("serialises concurrent transactions whose bodies await between statements", async () => {
    const { db } = await withTable();
    const log: string[] = [];
    const body = (name: string, id: number) => async (tx: Db) => {
      log.push(`${name}:begin`);
      await tx.run("INSERT INTO t (id, a) VALUES ($1, $2)", [id, name]);
      await tick();
      log.push(`${name}:middle`);
      const count = await tx.one<{ n: number }>("SELECT count(*) AS n FROM t");
      await tick();
      await tx.run("UPDATE t SET b = $2 WHERE id = $1", [id, count?.n]);
      log.push(`${name}:end`);
      return name;
    };
    const results = await Promise.all([db.transaction(body("A", 1)), db.transaction(body("B", 2))]);
    expect(results).toEqual(["A", "B"]);
    expect(log).toEqual(["A:begin", "A:middle", "A:end", "B:begin", "B:middle", "B:end"]);
    // B saw A's committed row, A did not see B's.
    expect(await db.all("SELECT id, b FROM t ORDER BY id")).toEqual([
      { id: 1, b: 1 },
      { id: 2, b: 2 },
    ]);
  });

  it("plain calls made while a transaction runs wait for it, and a failed one does not stall the queue", async () => {
    const { db } = await withTable();
    const log: string[] = [];
    const failing = db.transaction(async (tx) => {
      log.push("tx:begin");
      await tx.run("INSERT INTO t (id) VALUES (1)");
      await tick();
      log.push("tx:throw");
      throw new Error("nope");
    });
    const read = db.one<{ n: number }>("SELECT count(*) AS n FROM t").then((row) => {
      log.push(`read:${row?.n}`);
    });
    const next = db.transaction(async (tx) => {
      log.push("next:begin");
      await tx.run("INSERT INTO t (id) VALUES (2)");
    });
    await expect(failing).rejects.toThrow("nope");
    await Promise.all([read, next]);
    expect(log).toEqual(["tx:begin", "tx:throw", "read:0", "next:begin"]);
    expect(await db.all("SELECT id FROM t")).toEqual([{ id: 2 }]);
  });
});

describe("sqliteDb: group commit", () => {
  it("commits the transactions asked for together at once, and tells each caller only after", async () => {
    const { db, path } = await withTable();
    const other = open(path, { readonly: true });
    const seenByOther: number[] = [];
    const settled: string[] = [];
    const first = db.transaction(async (tx) => {
      await tx.run("INSERT INTO t (id, a) VALUES (1, 'first')");
      return "first";
    });
    const second = db.transaction(async (tx) => {
      // The first one's row is written but not yet committed: the two share one transaction.
      const row = await other.one<{ n: number }>("SELECT count(*) AS n FROM t");
      seenByOther.push(row?.n ?? -1);
      await tx.run("INSERT INTO t (id, a) VALUES (2, 'second')");
      return "second";
    });
    void first.then((value) => settled.push(value));
    void second.then((value) => settled.push(value));
    expect(await Promise.all([first, second])).toEqual(["first", "second"]);
    expect(seenByOther).toEqual([0]);
    expect(settled).toEqual(["first", "second"]);
    expect(await other.all("SELECT id FROM t ORDER BY id")).toEqual([{ id: 1 }, { id: 2 }]);
  });

  it("a transaction that throws in a group rolls back alone; the others commit", async () => {
    const { db, path } = await withTable();
    const outcomes = await Promise.allSettled([
      db.transaction((tx) => tx.run("INSERT INTO t (id, a) VALUES (1, 'kept')")),
      db.transaction(async (tx) => {
        await tx.run("INSERT INTO t (id, a) VALUES (2, 'dropped')");
        await tx.run("UPDATE t SET a = 'changed' WHERE id = 1");
        throw new Error("boom");
      }),
      db.transaction(async (tx) => {
        // Sees the first one's row, not the failed one's.
        const rows = await tx.all<{ id: number; a: string }>("SELECT id, a FROM t ORDER BY id");
        await tx.run("INSERT INTO t (id, a) VALUES (3, $1)", [rows.map((row) => `${row.id}${row.a}`).join()]);
      }),
      db.transaction((tx) => tx.run("INSERT INTO t (id) VALUES (1)")),
    ]);
    expect(outcomes.map((outcome) => outcome.status)).toEqual([
      "fulfilled",
      "rejected",
      "fulfilled",
      "rejected",
    ]);
    expect(String((outcomes[3] as PromiseRejectedResult).reason)).toMatch(/UNIQUE/);
    const other = open(path, { readonly: true });
    expect(await other.all("SELECT id, a FROM t ORDER BY id")).toEqual([
      { id: 1, a: "kept" },
      { id: 3, a: "1kept" },
    ]);
  });

  it("a plain statement asked for between two transactions runs between them", async () => {
    const { db } = await withTable();
    const first = db.transaction((tx) => tx.run("INSERT INTO t (id) VALUES (1)"));
    const read = db.one<{ n: number }>("SELECT count(*) AS n FROM t");
    const second = db.transaction((tx) => tx.run("INSERT INTO t (id) VALUES (2)"));
    await Promise.all([first, second]);
    expect(await read).toEqual({ n: 1 });
  });
});

describe("sqliteDb: readers beside a writer", () => {
  it("a readonly connection reads committed data while a writer holds an open transaction", async () => {
    const { db, path } = await withTable();
    await db.run("INSERT INTO t (id, a) VALUES (1, 'committed')");
    const reader = open(path, { readonly: true });
    let releaseWriter: () => void = () => {};
    const writerHolds = new Promise<void>((resolve) => {
      releaseWriter = resolve;
    });
    let writerStarted: () => void = () => {};
    const started = new Promise<void>((resolve) => {
      writerStarted = resolve;
    });
    const writing = db.transaction(async (tx) => {
      await tx.run("INSERT INTO t (id, a) VALUES (2, 'uncommitted')");
      writerStarted();
      await writerHolds;
    });
    await started;
    // WAL: the reader is not blocked by the write lock and sees only committed rows.
    expect(await reader.all("SELECT id, a FROM t ORDER BY id")).toEqual([{ id: 1, a: "committed" }]);
    releaseWriter();
    await writing;
    expect(await reader.all("SELECT id FROM t ORDER BY id")).toEqual([{ id: 1 }, { id: 2 }]);
  });

  it("a readonly connection cannot write", async () => {
    const { path } = await withTable();
    const reader = open(path, { readonly: true });
    await expect(reader.run("INSERT INTO t (id) VALUES (1)")).rejects.toThrow(/readonly/i);
  });

  it("the writer uses WAL", async () => {
    const { db } = await withTable();
    expect(await db.one("PRAGMA journal_mode")).toEqual({ journal_mode: "wal" });
  });
});
