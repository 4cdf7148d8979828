import type { Db } from "./db.js";
import { Database, nativeBinding, type SqliteDatabase, type SqliteStatement } from "./sqliteDriver.js";

/**
 * SQLite adapter for the Db port. One connection per process; WAL so `labsweep status` in
 * another terminal reads while a run writes. better-sqlite3 is synchronous, so an async
 * transaction could interleave with other callers between its awaits: every top-level call
 * queues behind a lock, and the transaction's own handle bypasses it.
 */
export function openSqliteDb(path: string, options: { readonly?: boolean } = {}): Db {
  const connection = new Database(path, {
    readonly: options.readonly ?? false,
    timeout: 10_000,
    ...(nativeBinding !== undefined && { nativeBinding }),
  });
  if (!options.readonly) configure(connection);
  const direct = directDb(connection);
  // Prepared once: preparing BEGIN and COMMIT anew for every transaction was measurable.
  const begin = connection.prepare("BEGIN IMMEDIATE");
  const commit = connection.prepare("COMMIT");
  const rollback = connection.prepare("ROLLBACK");
  let queue: Promise<unknown> = Promise.resolve();
  const locked = <T>(work: () => Promise<T>): Promise<T> => {
    const result = queue.then(work);
    queue = result.catch(() => undefined);
    return result;
  };
  return {
    dialect: "sqlite",
    all: (sql, params) => locked(() => direct.all(sql, params)),
    one: (sql, params) => locked(() => direct.one(sql, params)),
    run: (sql, params) => locked(() => direct.run(sql, params)),
    transaction: (work) =>
      locked(async () => {
        begin.run();
        try {
          const result = await work(direct);
          commit.run();
          return result;
        } catch (error) {
          if (connection.inTransaction) rollback.run();
          throw error;
        }
      }),
    close: () => locked(() => direct.close()),
  };
}

/** The pragmas a writing connection runs with. */
function configure(connection: SqliteDatabase): void {
  // Switching a fresh file to WAL needs an exclusive lock that the busy timeout does not wait
  // for: two processes opening a new ledger at once retry rather than fail.
  retryWhileBusy(() => connection.pragma("journal_mode = WAL"));
  // NORMAL in WAL mode: a committed transaction survives any process crash (kill -9); only a
  // power loss can drop the last few, and then result rows already fsynced to the CSVs are
  // found again by the resume scan. FULL would cost an fsync per commit, several per task.
  connection.pragma("synchronous = NORMAL");
  connection.pragma("foreign_keys = ON");
  // A 32 MB page cache (the default is 2 MB) keeps a million-task sync's index writes in
  // memory without pushing the process past its memory budget.
  connection.pragma("cache_size = -32768");
  // Checkpoints are where WAL mode fsyncs: at the default 1,000 pages a busy coordinator spent
  // a third of its time in them. 16,000 pages (64 MB of WAL at most) makes them rare.
  connection.pragma("wal_autocheckpoint = 16000");
}

/** The Db on the connection itself, unlocked: the transaction's own handle. */
function directDb(connection: SqliteDatabase): Db {
  // better-sqlite3 binds only plain `?` positionally: each `$n` becomes a `?`, and `order`
  // says which argument goes where (a `$n` may repeat or appear out of order).
  const statements = new Map<string, { statement: SqliteStatement; order: number[] }>();
  const prepare = (sql: string) => {
    let prepared = statements.get(sql);
    if (!prepared) {
      const order: number[] = [];
      const text = sql.replace(/\$(\d+)/g, (_, n: string) => {
        order.push(Number(n) - 1);
        return "?";
      });
      prepared = { statement: connection.prepare(text), order };
      statements.set(sql, prepared);
    }
    return prepared;
  };
  const bound = (sql: string, params: readonly unknown[]) => {
    const { statement, order } = prepare(sql);
    return { statement, args: order.map((index) => bindable(params[index])) };
  };
  const direct: Db = {
    dialect: "sqlite",
    async all<Row>(sql: string, params: readonly unknown[] = []) {
      const { statement, args } = bound(sql, params);
      return statement.all(...args) as Row[];
    },
    async one<Row>(sql: string, params: readonly unknown[] = []) {
      const { statement, args } = bound(sql, params);
      return statement.get(...args) as Row | undefined;
    },
    async run(sql: string, params: readonly unknown[] = []) {
      const { statement, args } = bound(sql, params);
      return { changes: statement.run(...args).changes };
    },
    async transaction<T>(work: (tx: Db) => Promise<T>) {
      return work(direct);
    },
    async close() {
      connection.close();
    },
  };
  return direct;
}

function bindable(value: unknown): unknown {
  return value === undefined ? null : typeof value === "boolean" ? Number(value) : value;
}

function retryWhileBusy(work: () => unknown): void {
  for (let attempt = 0; ; attempt++) {
    try {
      work();
      return;
    } catch (error) {
      const code = (error as { code?: string }).code;
      if ((code !== "SQLITE_BUSY" && code !== "SQLITE_LOCKED") || attempt >= 200) throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 25);
    }
  }
}
