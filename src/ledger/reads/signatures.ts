import type { Db } from "../db.js";

/** Signatures of the tasks that succeeded: what `plan` counts as already done. */
export async function succeededSignatures(db: Db): Promise<Set<string>> {
  const rows = await db.all<{ signature: string }>("SELECT signature FROM tasks WHERE state = 'succeeded'");
  return new Set(rows.map((row) => row.signature));
}

/** Every task the ledger knows, by signature: its id and state (for `plan --list`). */
export async function tasksBySignature(db: Db): Promise<Map<string, { id: number; state: string }>> {
  const rows = await db.all<{ id: number; signature: string; state: string }>(
    "SELECT id, signature, state FROM tasks",
  );
  return new Map(rows.map((row) => [row.signature, { id: row.id, state: row.state }]));
}
