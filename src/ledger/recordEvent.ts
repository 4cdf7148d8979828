import type { Db } from "./db.js";

/** Appends to the ledger's event log: what happened, when, to which task. */
export async function recordEvent(
  db: Db,
  now: number,
  kind: string,
  taskId: number | null,
  detail?: unknown,
): Promise<void> {
  await db.run("INSERT INTO events (at, kind, task_id, detail) VALUES ($1, $2, $3, $4)", [
    now,
    kind,
    taskId,
    detail === undefined ? null : JSON.stringify(detail),
  ]);
}
