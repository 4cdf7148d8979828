import type { Db } from "./db.js";
import { Database, nativeBinding, type SqliteDatabase, type SqliteStatement } from "./sqliteDriver.js";

/**
 * SQLite adapter for the Db port. One connection per process; WAL so `labsweep status` in
 * another terminal reads while a run writes. better-sqlite3 is synchronous, so an async
 * transaction could interleave with other callers between its awaits: every top-level call
 * queues behind a lock, and the transaction's own handle bypasses it. Transactions asked for
 * together are committed together (GroupCommit).
 */
export function openSqliteDb(path: string, options: { readonly?: boolean } = {}): Db {
  const connection = new Database(path, {
    readonly: options.readonly ?? false,
    timeout: 10_000,
    ...(nativeBinding !== undefined && { nativeBinding }),
  });
  if (!options.readonly) configure(connection);
  const direct = directDb(connection);
  let queue: Promise<unknown> = Promise.resolve();
  const locked = <T>(work: () => Promise<T>): Promise<T> => {
    const result = queue.then(work);
    queue = result.catch(() => undefined);
    return result;
  };
  const groupCommit = new GroupCommit(connection, direct, locked);
  // A statement outside a transaction closes the batch being gathered, so that no transaction
  // asked for after it runs before it.
  const alone = <T>(work: () => Promise<T>): Promise<T> => {
    groupCommit.close();
    return locked(work);
  };
  return {
    dialect: "sqlite",
    all: (sql, params) => alone(() => direct.all(sql, params)),
    one: (sql, params) => alone(() => direct.one(sql, params)),
    run: (sql, params) => alone(() => direct.run(sql, params)),
    transaction: (work) => groupCommit.add(work),
    close: () => alone(() => direct.close()),
  };
}

// Taken when this module loads: tests that fake timers must not stall the ledger.
const nextTurn = setImmediate;

interface Waiting {
  work: (tx: Db) => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit: the transactions asked for in one turn of the event loop run in one SQLite
 * transaction, each inside a savepoint, and each caller hears of its own once all are
 * committed. A busy coordinator gets the lease requests of many agents in one turn; a commit
 * (writing every page the transaction touched to the WAL) was a fifth of its time per request.
 * Each transaction still sees the ones before it and fails alone: a throw rolls back to its
 * savepoint. Nothing is reported done before it is committed, so a crash loses only work no
 * caller was told about, as before.
 */
class GroupCommit {
  private gathering: Waiting[] | null = null;
  private readonly begin: SqliteStatement;
  private readonly commit: SqliteStatement;
  private readonly rollback: SqliteStatement;
  private readonly savepoint: SqliteStatement;
  private readonly release: SqliteStatement;
  private readonly rollbackTo: SqliteStatement;

  constructor(
    private readonly connection: SqliteDatabase,
    private readonly direct: Db,
    private readonly locked: <T>(work: () => Promise<T>) => Promise<T>,
  ) {
    // Prepared once: preparing BEGIN and COMMIT anew for every transaction was measurable.
    this.begin = connection.prepare("BEGIN IMMEDIATE");
    this.commit = connection.prepare("COMMIT");
    this.rollback = connection.prepare("ROLLBACK");
    this.savepoint = connection.prepare("SAVEPOINT grouped");
    this.release = connection.prepare("RELEASE grouped");
    this.rollbackTo = connection.prepare("ROLLBACK TO grouped");
  }

  add<T>(work: (tx: Db) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.gathering === null) {
        const batch: Waiting[] = [];
        this.gathering = batch;
        void this.locked(async () => {
          await new Promise((turn) => nextTurn(turn));
          if (this.gathering === batch) this.gathering = null;
          await this.run(batch);
        });
      }
      this.gathering.push({ work, resolve: resolve as (value: unknown) => void, reject });
    });
  }

  /** Later transactions gather in a new batch. */
  close(): void {
    this.gathering = null;
  }

  private async run(batch: Waiting[]): Promise<void> {
    let done: Array<{ waiting: Waiting; value: unknown }> = [];
    const failAll = (error: unknown) => {
      for (const { waiting } of done) waiting.reject(error);
      done = [];
    };
    let open = false;
    for (const waiting of batch) {
      if (!open) {
        try {
          this.begin.run();
        } catch (error) {
          waiting.reject(error);
          continue;
        }
        open = true;
      }
      // One transaction alone needs no savepoint: a throw rolls the whole one back.
      const single = batch.length === 1;
      if (!single) this.savepoint.run();
      try {
        const value = await waiting.work(this.direct);
        if (!single) this.release.run();
        done.push({ waiting, value });
      } catch (error) {
        waiting.reject(error);
        if (!this.connection.inTransaction) {
          // SQLite ended the transaction itself (as on a full disk): the ones before are gone.
          failAll(error);
          open = false;
        } else if (single) {
          this.rollback.run();
          open = false;
        } else {
          this.rollbackTo.run();
          this.release.run();
        }
      }
    }
    if (!open) return;
    try {
      this.commit.run();
    } catch (error) {
      if (this.connection.inTransaction) this.rollback.run();
      failAll(error);
      return;
    }
    for (const { waiting, value } of done) waiting.resolve(value);
  }
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
  // Savepoints (group commit's, one per transaction) and multi-row statements journal the pages
  // they change, in a temp file by default: 12 page writes (syscalls) per task on a busy
  // coordinator, for journals that are thrown away at commit. In memory they cost a memcpy.
  connection.pragma("temp_store = MEMORY");
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
  const statements = new Map<string, Prepared>();
  const prepare = (sql: string): Prepared => {
    let prepared = statements.get(sql);
    if (!prepared) {
      const order: number[] = [];
      const text = sql.replace(/\$(\d+)/g, (_, n: string) => {
        order.push(Number(n) - 1);
        return "?";
      });
      const statement = connection.prepare(text);
      prepared = { statement, order, row: rowMaker(statement) };
      statements.set(sql, prepared);
    }
    return prepared;
  };
  const bound = (sql: string, params: readonly unknown[]) => {
    const prepared = prepare(sql);
    return { ...prepared, args: prepared.order.map((index) => bindable(params[index])) };
  };
  const direct: Db = {
    dialect: "sqlite",
    async all<Row>(sql: string, params: readonly unknown[] = []) {
      const { statement, args, row } = bound(sql, params);
      const rows = statement.all(...args);
      return (row ? (rows as unknown[][]).map(row) : rows) as Row[];
    },
    async one<Row>(sql: string, params: readonly unknown[] = []) {
      const { statement, args, row } = bound(sql, params);
      const values = statement.get(...args);
      return (row && values !== undefined ? row(values as unknown[]) : values) as Row | undefined;
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

interface Prepared {
  statement: SqliteStatement;
  order: number[];
  /** Makes a row object from a raw row's values, for a statement that returns rows. */
  row: ((values: unknown[]) => unknown) | null;
}

/**
 * Rows as objects built by a function made once per statement. better-sqlite3 builds each row
 * object by setting its columns one by one through V8's API, internalising every column name
 * again: for a task row (30 columns) that was half the cost of reading it, and reads of task rows
 * are a good part of every lease and report. Values come as arrays (`raw`), and an object literal
 * with the statement's column names in order (the same object better-sqlite3 makes: a repeated
 * name keeps its last value) takes them. Names are our own SQL's, written as JSON strings.
 */
function rowMaker(statement: SqliteStatement): Prepared["row"] {
  if (!statement.reader) return null;
  const build = (): ((values: unknown[]) => unknown) | null => {
    const names = statement.columns().map((column) => column.name);
    // `__proto__` in a literal would set the prototype rather than make a column.
    if (names.includes("__proto__")) return null;
    const fields = names.map((name, index) => `${JSON.stringify(name)}: values[${index}]`).join(", ");
    return new Function("values", `return { ${fields} };`) as (values: unknown[]) => unknown;
  };
  let make = build();
  if (!make) return null;
  statement.raw(true);
  let width = statement.columns().length;
  return (values) => {
    // SQLite prepares a statement again after a schema change (a migration by another
    // process): a `SELECT *` may then have more columns than the names taken before.
    if (values.length !== width) {
      make = build() ?? make;
      width = values.length;
    }
    return (make as (values: unknown[]) => unknown)(values);
  };
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
