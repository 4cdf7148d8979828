import { readdir, readFile } from "node:fs/promises";
import type { Db } from "./db.js";
import { LEDGER_LOCKS, lockLedger, sql } from "./dialect.js";

const MIGRATIONS_ROOT = new URL("../../migrations/", import.meta.url);

/** The migration that added live metric points (`metric_points`, `metric_series`). */
export const METRIC_POINTS_SCHEMA = 9;

/**
 * Applies the numbered SQL files of the adapter's dialect that the database has not seen, all in
 * one transaction: a ledger is either at its old version or at the newest, never in between, and
 * a fresh one costs one commit, not one per file. Each version is recorded as its file is applied,
 * so two processes starting together cannot both apply it: on SQLite the second blocks on the
 * first's write lock, then sees the versions; on PostgreSQL (several coordinator replicas may
 * start at once) the transaction first takes an advisory lock, so migrators run one after the
 * other and skip applied versions. A ledger already at the newest version is only read (no write
 * transaction, no file read but the dir's listing). Returns the versions this call applied.
 */
export async function migrate(db: Db): Promise<number[]> {
  const directory = new URL(`${db.dialect}/`, MIGRATIONS_ROOT);
  const files = (await readdir(directory)).filter((name) => /^\d{6}\.sql$/.test(name)).sort();
  const seen = await appliedVersions(db);
  const pending = files.filter((name) => !seen.has(Number(name.slice(0, 6))));
  if (pending.length === 0) return [];
  const texts = await Promise.all(pending.map((name) => readFile(new URL(name, directory), "utf8")));
  return db.transaction(async (tx) => {
    await lockLedger(tx, LEDGER_LOCKS.migrate);
    // Concurrent CREATE TABLE IF NOT EXISTS can still collide on PostgreSQL: hence the lock first.
    await tx.run(
      "CREATE TABLE IF NOT EXISTS labsweep_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    );
    const applied: number[] = [];
    for (const [index, name] of pending.entries()) {
      const version = Number(name.slice(0, 6));
      const inserted = await tx.run(
        "INSERT INTO labsweep_migrations (version, applied_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [version, new Date().toISOString()],
      );
      if (inserted.changes === 0) continue; // another process applied it meanwhile
      for (const statement of splitStatements(texts[index] as string)) await tx.run(statement);
      applied.push(version);
    }
    return applied;
  });
}

/** The versions recorded as applied; none in a database labsweep has not migrated yet. */
async function appliedVersions(db: Db): Promise<Set<number>> {
  const table = await db.one<{ n: number }>(
    sql(db, {
      sqlite: "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'labsweep_migrations'",
      // Found as an unqualified name is, through the search path.
      postgres: "SELECT CASE WHEN to_regclass('labsweep_migrations') IS NULL THEN 0 ELSE 1 END AS n",
    }),
  );
  if (!table?.n) return new Set();
  const rows = await db.all<{ version: number }>("SELECT version FROM labsweep_migrations");
  return new Set(rows.map((row) => Number(row.version)));
}

/** Splits a migration file on semicolons at line ends; our migrations keep one statement per `;`. */
function splitStatements(sql: string): string[] {
  return sql
    .replace(/--[^\n]*/g, "")
    .split(/;\s*(?:\n|$)/)
    .map((statement) => statement.trim())
    .filter((statement) => statement.length > 0);
}

/** The newest migration applied to the store (0 for none). */
export async function schemaVersion(db: Db): Promise<number> {
  const row = await db.one<{ version: number | null }>(
    "SELECT max(version) AS version FROM labsweep_migrations",
  );
  return row?.version ?? 0;
}

/**
 * Refuses, in words, a ledger older than `version` (a read-only command does not migrate):
 * "no such table" would say nothing about what to do.
 */
export async function requireSchema(db: Db, version: number, what: string): Promise<void> {
  const current = await schemaVersion(db);
  if (current < version) {
    throw new OldLedgerError(
      `${what} needs ledger version ${version}; this ledger is at ${current}: run \`labsweep migrate\` (or any \`labsweep run\`/\`serve\` on it) first`,
    );
  }
}

/** A ledger older than a command needs (a usage error: exit 2). */
export class OldLedgerError extends Error {}
