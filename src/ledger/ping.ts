import type { Db } from "./db.js";

/** Resolves once the store answers a trivial query: the health check's probe. */
export async function pingLedger(db: Db): Promise<void> {
  await db.one("SELECT 1 AS ok");
}
