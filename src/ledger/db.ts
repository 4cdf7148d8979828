/**
 * The one narrow port between ledger operations and a SQL database. Operations write SQL with
 * `$1, $2…` placeholders; each adapter is a few dozen lines. Nothing above the ledger imports a
 * driver.
 */
export interface Db {
  readonly dialect: "sqlite" | "postgres";
  /** Rows of a query. */
  all<Row>(sql: string, params?: readonly unknown[]): Promise<Row[]>;
  /** The first row, or undefined. */
  one<Row>(sql: string, params?: readonly unknown[]): Promise<Row | undefined>;
  /** A statement's effect. */
  run(sql: string, params?: readonly unknown[]): Promise<{ changes: number }>;
  /** Runs `work` in one transaction: committed if it resolves, rolled back if it throws. */
  transaction<T>(work: (tx: Db) => Promise<T>, options?: TransactionOptions): Promise<T>;
  close(): Promise<void>;
}

export interface TransactionOptions {
  /**
   * Every statement reaches a handful of rows by key, through an index, however large the
   * tables. PostgreSQL then plans each statement once per connection, with index lookups only,
   * instead of parsing and planning it on every run. (SQLite: no difference.)
   */
  keyed?: boolean;
}
