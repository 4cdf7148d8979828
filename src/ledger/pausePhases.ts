import type { Db } from "./db.js";
import { assertKnownPhase } from "./knownPhase.js";
import { recordEvent } from "./recordEvent.js";

/**
 * Pauses (or resumes) one phase, or every active phase: a paused phase starts no new task
 * (claims skip it), while its running tasks finish. Returns the phases whose flag changed. The
 * flag is the ledger's own: a sync of the configs leaves it, so a paused sweep stays paused
 * when `run` starts again. An unknown phase throws UnknownPhaseError.
 */
export async function pausePhases(
  db: Db,
  paused: boolean,
  now: number,
  options: { phase?: string } = {},
): Promise<string[]> {
  return db.transaction(async (tx) => {
    if (options.phase !== undefined) await assertKnownPhase(tx, options.phase);
    const changed = await tx.all<{ name: string }>(
      `UPDATE phases SET paused = $1
        WHERE active = 1 AND paused <> $1 ${options.phase === undefined ? "" : "AND name = $2"}
        RETURNING name`,
      options.phase === undefined ? [paused ? 1 : 0] : [paused ? 1 : 0, options.phase],
    );
    const names = changed.map((row) => row.name);
    if (names.length > 0)
      await recordEvent(tx, now, paused ? "phases_paused" : "phases_resumed", null, { phases: names });
    return names;
  });
}

/** The active phases `labsweep pause` left paused, in declaration order. */
export async function pausedPhases(db: Db): Promise<string[]> {
  const rows = await db.all<{ name: string }>(
    "SELECT name FROM phases WHERE active = 1 AND paused = 1 ORDER BY position",
  );
  return rows.map((row) => row.name);
}
