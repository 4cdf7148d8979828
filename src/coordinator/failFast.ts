import type { Db } from "../ledger/db.js";
import { stopPhase } from "../ledger/evaluateGates.js";
import { holdIfStopped, phaseOfAttempt, phaseOutcomes } from "../ledger/failingPhases.js";
import type { RunPolicy } from "../sweep/types.js";
import type { FinishReport } from "./finalFailure.js";

/** Outcomes that count as a phase's failures (a lost or interrupted attempt is no verdict on it). */
const FAILURES = new Set(["failed", "timeout", "hung", "oom"]);

/**
 * Fail fast (a phase's `max_failures`): after failed attempts, stops a phase once that many of
 * its tasks failed for good (a fraction below 1: of its tasks), or once its first that-many
 * attempts since the coordinator started all failed with one error line (the last line of their
 * logs) — the broken import that would otherwise fail every task of a week-long sweep. The
 * count is the ledger's; the lines are kept here, so a restarted coordinator counts them anew.
 */
export class FailFast {
  /** Per phase: its failed attempts' one error line so far and how many, until two differ. */
  private readonly lines = new Map<string, { same: string | null; count: number; broken: boolean }>();

  constructor(private readonly now: () => number) {}

  /**
   * After a batch of reports was recorded, in their transaction (before it leases anything):
   * stops the phases their failures show failing fast. Successes cost nothing here: a phase
   * with one is past its first attempts (read in verdict).
   */
  async afterReports(tx: Db, reports: Array<{ attemptId: number; report: FinishReport }>): Promise<void> {
    for (const { attemptId, report } of reports) {
      if (report.outcome.kind === "succeeded") continue;
      // A task that was running when its phase stopped, and is back in the queue now, is held
      // with the rest of the phase (else the sweep would wait for it forever).
      await holdIfStopped(tx, attemptId);
      if (!FAILURES.has(report.outcome.kind)) continue;
      const phase = await phaseOfAttempt(tx, attemptId);
      if (!phase) continue;
      const limit = (JSON.parse(phase.policy_json) as RunPolicy).maxFailures;
      if (limit === undefined) continue;
      const seen = this.lines.get(phase.phase) ?? { same: null, count: 0, broken: false };
      this.lines.set(phase.phase, seen);
      const reason = await this.verdict(tx, phase.phase, limit, seen, errorLine(report));
      if (reason) await stopPhase(tx, phase.phase, reason, this.now());
    }
  }

  private async verdict(
    tx: Db,
    phase: string,
    limit: number,
    seen: { same: string | null; count: number; broken: boolean },
    line: string,
  ): Promise<string | null> {
    const counts = await phaseOutcomes(tx, phase);
    if (counts.succeeded > 0) seen.broken = true;
    const failed = counts.failed;
    const needed = limit >= 1 ? limit : Math.max(1, Math.ceil(limit * counts.total));
    const setting = `max_failures ${limit}`;
    if (failed >= needed)
      return `stopped (${setting}): ${failed} of its tasks failed for good; \`labsweep retry --failed --phase ${phase}\` reopens it`;
    // The first attempts all failing alike: a broken setup, not bad luck.
    if (!seen.broken) {
      if (seen.same === null || seen.same === line) {
        seen.same = line;
        seen.count++;
      } else seen.broken = true;
      if (!seen.broken && seen.count >= Math.max(2, needed))
        return `stopped (${setting}): its first ${seen.count} attempts all failed with "${line}"; \`labsweep retry --failed --phase ${phase}\` reopens it`;
    }
    return null;
  }
}

/** The last non-blank line of the attempt's log, else its outcome's error. */
function errorLine(report: FinishReport): string {
  const lines = (report.logTail ?? "").split("\n").map((line) => line.trim());
  const last = lines.filter(Boolean).at(-1);
  const fallback = "error" in report.outcome ? report.outcome.error : report.outcome.kind;
  return (last ?? fallback ?? "").slice(0, 300);
}
