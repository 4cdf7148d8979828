import { didYouMean } from "../sweep/closest.js";
import type { Db } from "./db.js";

/** `retry --phase` or `cancel --phase` named a phase the sweep does not have. */
export class UnknownPhaseError extends Error {
  override readonly name = "UnknownPhaseError";
  constructor(
    readonly phase: string,
    readonly phases: string[],
  ) {
    super(`unknown phase ${phase} (phases: ${phases.join(", ") || "none"})${didYouMean(phase, phases)}`);
  }
}

/**
 * Throws UnknownPhaseError unless `phase` is an active phase: an operation scoped to a phase
 * that does not exist names it (with the phases there are) instead of doing nothing quietly.
 */
export async function assertKnownPhase(db: Db, phase: string): Promise<void> {
  const phases = await db.all<{ name: string }>("SELECT name FROM phases WHERE active = 1 ORDER BY position");
  if (!phases.some((row) => row.name === phase))
    throw new UnknownPhaseError(
      phase,
      phases.map((row) => row.name),
    );
}
