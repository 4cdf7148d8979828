import type { Db } from "./db.js";
import { sql } from "./dialect.js";

// The sender's side of the notifications outbox (enqueueNotifications.ts writes it): claim rows
// that are due, then settle each as sent, to retry, or given up.

export interface OwedNotification {
  id: number;
  uid: string;
  target: string;
  event: string;
  payload: string;
  created_at: number;
  /** Deliveries started, this one included. */
  tries: number;
}

/**
 * Claims up to `limit` owed notifications of these targets that are due: each is this sender's
 * until `claimUntil` (its next_try), so another replica skips it while it is being sent and takes
 * it over only if this one dies. PostgreSQL: SKIP LOCKED, so two replicas never wait on, or both
 * take, one row.
 */
export async function claimNotifications(
  db: Db,
  targets: readonly string[],
  now: number,
  claimUntil: number,
  limit: number,
): Promise<OwedNotification[]> {
  if (targets.length === 0) return [];
  const due = sql(db, {
    sqlite: `SELECT id FROM notifications
              WHERE state = 'owed' AND next_try <= $1 AND target IN (SELECT value FROM json_each($4))
              ORDER BY id LIMIT $3`,
    postgres: `SELECT id FROM notifications
                WHERE state = 'owed' AND next_try <= $1 AND target = ANY($4::text[])
                ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED`,
  });
  const rows = await db.all<OwedNotification>(
    `UPDATE notifications SET next_try = $2, tries = tries + 1 WHERE id IN (${due})
     RETURNING id, uid, target, event, payload, created_at, tries`,
    [now, claimUntil, limit, db.dialect === "sqlite" ? JSON.stringify(targets) : targets],
  );
  return rows
    .map((row) => ({
      ...row,
      id: Number(row.id),
      created_at: Number(row.created_at),
      tries: Number(row.tries),
    }))
    .sort((a, b) => a.id - b.id);
}

/** A delivery succeeded. */
export async function markNotificationSent(db: Db, id: number, now: number): Promise<void> {
  await db.run("UPDATE notifications SET state = 'sent', sent_at = $2, last_error = NULL WHERE id = $1", [
    id,
    now,
  ]);
}

/** A delivery failed: try again at `retryAt`. */
export async function retryNotificationAt(db: Db, id: number, retryAt: number, error: string): Promise<void> {
  await db.run("UPDATE notifications SET next_try = $2, last_error = $3 WHERE id = $1 AND state = 'owed'", [
    id,
    retryAt,
    error,
  ]);
}

/** A delivery failed for good (tries spent, or an answer no retry can change). */
export async function giveUpNotification(db: Db, id: number, error: string): Promise<void> {
  await db.run("UPDATE notifications SET state = 'gave_up', last_error = $2 WHERE id = $1", [id, error]);
}

/**
 * Ends every claim at once: for the ledger's only coordinator (SQLite, under the state dir's
 * lock) at its start, when every claim is a dead process's and waiting out its lease would only
 * delay what it did not send.
 */
export async function releaseNotificationClaims(db: Db, now: number): Promise<void> {
  await db.run("UPDATE notifications SET next_try = $1 WHERE state = 'owed' AND next_try > $1", [now]);
}

/** Owed notifications of these targets, and the earliest time one is due (null: none owed). */
export async function owedNotifications(
  db: Db,
  targets: readonly string[],
): Promise<{ owed: number; nextTry: number | null }> {
  if (targets.length === 0) return { owed: 0, nextTry: null };
  const row = await db.one<{ owed: number; next_try: number | null }>(
    sql(db, {
      sqlite: `SELECT count(*) AS owed, min(next_try) AS next_try FROM notifications
                WHERE state = 'owed' AND target IN (SELECT value FROM json_each($1))`,
      postgres: `SELECT count(*) AS owed, min(next_try) AS next_try FROM notifications
                  WHERE state = 'owed' AND target = ANY($1::text[])`,
    }),
    [db.dialect === "sqlite" ? JSON.stringify(targets) : targets],
  );
  return {
    owed: Number(row?.owed ?? 0),
    nextTry: row?.next_try === null || row?.next_try === undefined ? null : Number(row.next_try),
  };
}
