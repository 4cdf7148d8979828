import { createRequire } from "node:module";
import type pg from "pg";
import type { Db, TransactionOptions } from "./db.js";

const require = createRequire(import.meta.url);
let driver: typeof pg | null = null;

/**
 * pg, loaded with the first PostgreSQL ledger: most ledgers are SQLite files, and every command
 * (`status` included) paid some 40 ms loading a driver it never used.
 */
export function pgDriver(): typeof pg {
  driver ??= require("pg") as typeof pg;
  return driver;
}

const INT8_OID = 20;
const NUMERIC_OID = 1700;

/**
 * Ids, epoch-ms columns and count(*) are BIGINT, sum()/avg() of integers NUMERIC: pg returns
 * both as strings by default, because they can exceed 2^53. Ours never do, and the ledger's
 * operations expect JS numbers as SQLite gives them. Set on this pool only, not globally.
 */
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === INT8_OID || oid === NUMERIC_OID
      ? (value: string) => Number(value)
      : pgDriver().types.getTypeParser(oid, format)) as pg.CustomTypesConfig["getTypeParser"],
};

/** Deadlock and serialization failures: the transaction did nothing and may simply run again. */
const RETRYABLE = new Set(["40P01", "40001"]);
const TRANSACTION_TRIES = 5;

/**
 * Failures of the connection, not of the statement: the server shutting down or restarting
 * (57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now), class 08 connection
 * exceptions, and the socket's own errors. What was running when one struck never committed
 * (but for a COMMIT whose answer was lost), so it may run again once the server is back.
 */
const CONNECTION_CODES = new Set([
  "57P01",
  "57P02",
  "57P03",
  "08000",
  "08001",
  "08003",
  "08004",
  "08006",
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
]);
/** pg's own words for a connection that ended, which carry no code. */
const CONNECTION_MESSAGES =
  /Connection terminated|Client has encountered a connection error|timeout exceeded when trying to connect|Connection ended/i;
const RECONNECT_FIRST_WAIT_MS = 100;
const RECONNECT_MAX_WAIT_MS = 2000;

/** Statements longer than this, or past this many distinct texts, are not prepared. */
const NAMED_MAX_LENGTH = 2000;
const NAMED_MAX = 300;

export interface PostgresDbOptions {
  /**
   * Connections in the pool; keyed transactions, if any run, get a second pool of this size.
   * (Default: 10)
   */
  max?: number;
  /**
   * How long to wait for a connection (a new one, or a pooled one when all are busy) before the
   * statement fails rather than hangs on an unreachable server. (Default: 30 s)
   */
  connectTimeoutMs?: number;
  /**
   * How long a statement or transaction that lost its connection (the server restarting, a
   * network blip) is tried again, with backoff, before it fails. Only once the server has
   * answered: one that cannot be reached at start fails at once. (Default: 30 s)
   */
  reconnectForMs?: number;
}

/**
 * PostgreSQL adapter for the Db port, on a `pg` Pool. A transaction takes a client of its own
 * (BEGIN/COMMIT, ROLLBACK on a throw) and nested `transaction` calls on it reuse it; statements
 * outside a transaction each take any free client. Keyed transactions take theirs from a pool
 * of their own (see below). Pools connect lazily: opening never fails, the first statement does
 * if the server cannot be reached.
 */
export function openPostgresDb(url: string, options: PostgresDbOptions = {}): Db {
  const pool = createPool(url, options);
  // Keyed transactions (see TransactionOptions) run on connections of their own, whose planner
  // may use nothing but index lookups and plans each statement once, however small the tables
  // were then: the coordinator's hot path spent half of the server's time parsing and planning.
  let keyedPool: pg.Pool | null = null;
  const keyed = (): pg.Pool => {
    keyedPool ??= createPool(
      url,
      options,
      "-c plan_cache_mode=force_generic_plan -c enable_seqscan=off -c enable_hashjoin=off -c enable_mergejoin=off",
    );
    return keyedPool;
  };
  const query = statementNamer();
  const persist = reconnecting(options.reconnectForMs ?? 30_000);
  const transaction = <T>(work: (tx: Db) => Promise<T>, settings?: TransactionOptions): Promise<T> => {
    const indexOnly = settings?.keyed === true;
    return persist(() => transactionOnce(indexOnly ? keyed() : pool, indexOnly, query, work));
  };
  return {
    ...statementsOn(pool, query, persist),
    transaction,
    async close() {
      await Promise.all([pool.end(), keyedPool?.end()]);
    },
  };
}

/** A pg Pool whose connections' failures never end the process. */
function createPool(url: string, options: PostgresDbOptions, settings?: string): pg.Pool {
  const created = new (pgDriver().Pool)({
    connectionString: url,
    max: options.max ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 30_000,
    types,
    options: settings,
  });
  // An idle client whose server went away is dropped by the pool; the next statement reconnects
  // or fails with its own error. Without a listener the event would kill the process.
  created.on("error", () => undefined);
  // So would a client's own error while it is checked out between statements (a transaction
  // waiting on the coordinator's code): its next statement fails instead, and is retried.
  created.on("connect", (client) => client.on("error", () => undefined));
  return created;
}

type Query = (sql: string, params: readonly unknown[], indexOnly: boolean) => pg.QueryConfig;
type Persist = <T>(attempt: () => Promise<T>) => Promise<T>;

/**
 * The ledger's statements are a few dozen fixed texts run thousands of times: each gets a name,
 * so every connection parses and plans it once (a prepared statement). Long texts are the
 * variable-width batches of a sync and stay unnamed, as do statements without parameters
 * (migrations' DDL). Outside keyed transactions, so are statements that bind arrays (batches
 * of ids): a generic plan assumes ten elements and the table sizes of its first runs, and a
 * sequential scan chosen while `attempts` was still empty stayed for the connection's life.
 * Planned with their actual arrays, they use the indexes.
 */
function statementNamer(): Query {
  const names = new Map<string, string>();
  return (sql, params, indexOnly) => {
    let name: string | undefined;
    if (params.length > 0 && sql.length <= NAMED_MAX_LENGTH && (indexOnly || !params.some(Array.isArray))) {
      name = names.get(sql);
      if (name === undefined && names.size < NAMED_MAX) {
        name = `labsweep_${names.size + 1}`;
        names.set(sql, name);
      }
    }
    return { text: sql, values: params.map(bindable), name };
  };
}

/** Runs an attempt again while it fails for want of a connection, for up to reconnectForMs. */
function reconnecting(reconnectForMs: number): Persist {
  // Whether the server has answered yet: before that, a connection failure is a wrong URL or a
  // server that is not up, and fails at once (the CLI's store check says so).
  let reached = false;
  return async <T>(attempt: () => Promise<T>): Promise<T> => {
    let since: number | null = null;
    for (let tries = 0; ; tries++) {
      try {
        const result = await attempt();
        reached = true;
        return result;
      } catch (error) {
        if (!reached || !isConnectionError(error)) throw error;
        since ??= Date.now();
        if (Date.now() - since >= reconnectForMs) throw error;
        const wait = Math.min(RECONNECT_MAX_WAIT_MS, RECONNECT_FIRST_WAIT_MS * 2 ** Math.min(tries, 10));
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
  };
}

/**
 * The Db statements on a pool or a client. Statements outside a transaction each take any pooled
 * client and are retried on their own; inside one, a lost connection fails the statement and the
 * whole transaction runs again.
 */
function statementsOn(
  client: pg.Pool | pg.PoolClient,
  query: Query,
  persist: Persist,
  indexOnly = false,
): Omit<Db, "transaction" | "close"> {
  const send = (sql: string, params: readonly unknown[]) =>
    client instanceof pgDriver().Pool
      ? persist(() => client.query(query(sql, params, indexOnly)))
      : client.query(query(sql, params, indexOnly));
  return {
    dialect: "postgres",
    async all<Row>(sql: string, params: readonly unknown[] = []) {
      return (await send(sql, params)).rows as Row[];
    },
    async one<Row>(sql: string, params: readonly unknown[] = []) {
      return (await send(sql, params)).rows[0] as Row | undefined;
    },
    async run(sql: string, params: readonly unknown[] = []) {
      return { changes: (await send(sql, params)).rowCount ?? 0 };
    },
  };
}

/** One transaction on a client of its own, run again on a deadlock or serialization failure. */
async function transactionOnce<T>(
  pool: pg.Pool,
  indexOnly: boolean,
  query: Query,
  work: (tx: Db) => Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const client = await pool.connect();
    const tx: Db = {
      ...statementsOn(client, query, (run) => run(), indexOnly),
      transaction: (inner) => inner(tx),
      close: async () => undefined,
    };
    let broken: Error | undefined;
    let committing = false;
    try {
      await client.query("BEGIN");
      const result = await work(tx);
      committing = true;
      await client.query("COMMIT");
      return result;
    } catch (error) {
      // The server may have committed before the connection dropped: running the work again
      // could apply it twice (claim a task a second time), so the caller hears of it instead.
      if (committing && isConnectionError(error)) {
        broken = error as Error;
        throw new Error(
          "the connection to PostgreSQL was lost during COMMIT: the transaction may or may not have been applied",
          { cause: error },
        );
      }
      try {
        await client.query("ROLLBACK");
      } catch (rollbackError) {
        // The connection itself failed: the pool must not hand it out again.
        broken = rollbackError as Error;
      }
      // A connection that failed once is never handed out again, even if ROLLBACK got through.
      if (!broken && isConnectionError(error)) broken = error as Error;
      const code = (error as { code?: string }).code;
      if (!broken && code && RETRYABLE.has(code) && attempt < TRANSACTION_TRIES) continue;
      throw error;
    } finally {
      client.release(broken);
    }
  }
}

/** Whether an error is the connection's (see CONNECTION_CODES), not the statement's. */
export function isConnectionError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" && CONNECTION_CODES.has(code)) return true;
  // Several addresses tried at once (localhost: ::1 and 127.0.0.1) fail as one AggregateError.
  if (error instanceof AggregateError && error.errors.length > 0)
    return error.errors.every((inner) => isConnectionError(inner));
  return CONNECTION_MESSAGES.test(error.message);
}

function bindable(value: unknown): unknown {
  return value === undefined ? null : typeof value === "boolean" ? Number(value) : value;
}
