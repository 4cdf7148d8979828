import type { Db } from "./db.js";

/** A notification to record: one `notify:` entry (its target key) and one happening. */
export interface NotificationRow {
  /** The entry's key (a hash of it: no URL reaches the ledger). */
  target: string;
  /** What happened, unique per target: a second row about it is not recorded. */
  about: string;
  event: string;
  /** The event's fields, as JSON. */
  payload: string;
  /** The idempotency key receivers see as `id`. */
  uid: string;
}

/**
 * Records notifications in the caller's transaction (the one that records what they tell of),
 * each at most once per target and happening. Returns how many were new.
 */
export async function enqueueNotifications(
  tx: Db,
  rows: readonly NotificationRow[],
  now: number,
): Promise<number> {
  let added = 0;
  for (const row of rows) {
    const { changes } = await tx.run(
      `INSERT INTO notifications (uid, target, about, event, payload, created_at)
       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (target, about) DO NOTHING`,
      [row.uid, row.target, row.about, row.event, row.payload, now],
    );
    added += changes;
  }
  return added;
}
