import type { Db } from "./db.js";

/**
 * The few statements that cannot be one portable text: picks the caller's dialect's. Prefer
 * portable SQL; this is for what has no common form (row locks, JSON access, catalog reads).
 */
export function sql(db: Db, texts: { sqlite: string; postgres: string }): string {
  return texts[db.dialect];
}

/**
 * ` INDEXED BY <index>` on SQLite, nothing on PostgreSQL. For the partial indexes of claimable and
 * of waiting tasks (migration 15): SQLite's planner, without statistics, prefers tasks_by_state's
 * `state = ?`, which also reads every pending task that cannot be claimed.
 */
export function indexedBy(db: Db, index: "tasks_claimable" | "tasks_waiting"): string {
  return db.dialect === "sqlite" ? ` INDEXED BY ${index}` : "";
}

/**
 * ` FOR UPDATE OF <alias>` on PostgreSQL, nothing on SQLite (whose transactions hold the
 * database's write lock from BEGIN IMMEDIATE on): appended to a transaction's read of rows it
 * will change, so concurrent coordinators on one PostgreSQL database wait for each other there.
 */
export function forUpdate(db: Db, alias: string, options: { skipLocked?: boolean } = {}): string {
  if (db.dialect === "sqlite") return "";
  return ` FOR UPDATE OF ${alias}${options.skipLocked ? " SKIP LOCKED" : ""}`;
}

/**
 * Keys of transaction-scoped advisory locks: work that must not run twice at once on one
 * PostgreSQL database (several replicas). Values are arbitrary but fixed forever.
 */
export const LEDGER_LOCKS = {
  /** Migrations: replicas starting together apply each version once. */
  migrate: 0x6c6162737765,
  /** syncSweep: assigns ids as max(id) + 1 and de-duplicates signatures in memory. */
  sync: 0x6c6162737701,
  /** evaluateGates: reads counts, then moves phases and their tasks. */
  gates: 0x6c6162737702,
  /** Draining the results outbox into CSV files: one writer per database (issue 5 part 2). */
  results: 0x6c6162737703,
  /** Requeueing attempts whose lease ran out (issue 5 part 2). */
  leases: 0x6c6162737704,
} as const;

/**
 * Holds `key` until the transaction ends. On SQLite, a transaction already excludes every other
 * writer, so there is nothing to take.
 */
export async function lockLedger(tx: Db, key: number): Promise<void> {
  if (tx.dialect === "postgres") await tx.run("SELECT pg_advisory_xact_lock($1)", [key]);
}

/**
 * Takes `key` for the rest of the transaction if no one holds it; false if another transaction
 * does (it is doing the duty right now, so this one may skip it). Always true on SQLite.
 */
export async function tryLockLedger(tx: Db, key: number): Promise<boolean> {
  if (tx.dialect === "sqlite") return true;
  const row = await tx.one<{ locked: boolean }>("SELECT pg_try_advisory_xact_lock($1) AS locked", [key]);
  return row?.locked === true;
}
