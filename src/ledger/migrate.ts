import { readdir, readFile } from "node:fs/promises";
import type { Db } from "./db.js";
import { LEDGER_LOCKS, lockLedger } from "./dialect.js";

const MIGRATIONS_ROOT = new URL("../../migrations/", import.meta.url);

/** The migration that added live metric points (`metric_points`, `metric_series`). */
export const METRIC_POINTS_SCHEMA = 9;

/**
 * Applies the numbered SQL files of the adapter's dialect that the database has not seen. Each
 * runs in a transaction that records its version first, so two processes starting together
 * cannot both apply it. On SQLite the second blocks on the first's write lock, then sees the
 * version; on PostgreSQL (several coordinator replicas may start at once) each transaction
 * first takes an advisory lock, so migrators run one after the other and skip applied versions.
 * Returns the versions this call applied.
 */
export async function migrate(db: Db): Promise<number[]> {
  await db.transaction(async (tx) => {
    await lockLedger(tx, LEDGER_LOCKS.migrate);
    // Concurrent CREATE TABLE IF NOT EXISTS can still collide on PostgreSQL: hence the lock first.
    await tx.run(
      "CREATE TABLE IF NOT EXISTS labsweep_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    );
  });
  const directory = new URL(`${db.dialect}/`, MIGRATIONS_ROOT);
  const files = (await readdir(directory)).filter((name) => /^\d{6}\.sql$/.test(name)).sort();
  const applied: number[] = [];
  for (const name of files) {
    const version = Number(name.slice(0, 6));
    const sql = await readFile(new URL(name, directory), "utf8");
    const didApply = await db.transaction(async (tx) => {
      await lockLedger(tx, LEDGER_LOCKS.migrate);
      const inserted = await tx.run(
        "INSERT INTO labsweep_migrations (version, applied_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [version, new Date().toISOString()],
      );
      if (inserted.changes === 0) return false;
      for (const statement of splitStatements(sql)) await tx.run(statement);
      return true;
    });
    if (didApply) applied.push(version);
  }
  return applied;
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
