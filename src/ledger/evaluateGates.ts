import type { Gate } from "../sweep/types.js";
import type { Db } from "./db.js";
import { LEDGER_LOCKS, lockLedger } from "./dialect.js";
import { recordEvent } from "./recordEvent.js";

/** `stopped`: failed fast (its `max_failures`); held like `blocked` until `labsweep retry`. */
export type PhaseState = "waiting" | "open" | "blocked" | "stopped";

interface PhaseRow {
  name: string;
  after_json: string;
  gate_json: string;
  state: PhaseState;
  reason: string | null;
}

interface PhaseCounts {
  total: number;
  succeeded: number;
  /** Tasks that will not change state any more: succeeded, failed, blocked, cancelled. */
  settled: number;
}

/**
 * Opens the phases whose `after` phases have settled and passed their gate, blocks those whose
 * gate failed (with the reason `status` shows), and keeps tasks' `runnable` and `blocked` flags
 * in step. Only phases still waiting cost a query, so a sweep without `after` pays nothing.
 * Returns true when something changed (new work may be claimable).
 */
export async function evaluateGates(db: Db, now: number): Promise<boolean> {
  return (await judgeGates(db, now)).changed;
}

/**
 * evaluateGates, also saying how many phases are still waiting afterwards. Once none is, none
 * will be until a sync or `retry` puts one back: a caller may skip evaluating until then.
 */
export async function judgeGates(db: Db, now: number): Promise<{ changed: boolean; waiting: number }> {
  // Open phases stay open and blocked ones wait for `retry`: only waiting phases can change,
  // and most sweeps have none, so this read is all the common case costs.
  const waiting = await db.one<{ n: number }>(
    "SELECT count(*) AS n FROM phases WHERE active = 1 AND state = 'waiting'",
  );
  if (!waiting?.n) return { changed: false, waiting: 0 };
  return db.transaction(async (tx) => {
    // Replicas on one PostgreSQL database judge gates one at a time, each on the other's result.
    await lockLedger(tx, LEDGER_LOCKS.gates);
    const phases = await tx.all<PhaseRow>(
      "SELECT name, after_json, gate_json, state, reason FROM phases WHERE active = 1 ORDER BY position",
    );
    const byName = new Map(phases.map((phase) => [phase.name, phase]));
    const counts = new Map<string, PhaseCounts>();
    const countsOf = async (name: string): Promise<PhaseCounts> => {
      let found = counts.get(name);
      if (!found) {
        const row = await tx.one<PhaseCounts>(
          `SELECT count(*) AS total,
                  count(CASE WHEN t.state = 'succeeded' THEN 1 END) AS succeeded,
                  count(CASE WHEN t.state IN ('succeeded', 'failed', 'blocked', 'cancelled') THEN 1 END) AS settled
             FROM placements p JOIN tasks t ON t.id = p.task_id
            WHERE p.phase = $1 AND p.active = 1`,
          [name],
        );
        found = row ?? { total: 0, succeeded: 0, settled: 0 };
        counts.set(name, found);
      }
      return found;
    };
    let changed = false;
    // Phases are in declaration order, but `after` may point forward: iterate to a fixed point.
    for (let pass = 0; pass < phases.length + 1; pass++) {
      let passChanged = false;
      for (const phase of phases) {
        if (phase.state !== "waiting") continue;
        const verdict = await judge(phase, byName, countsOf);
        if (verdict.state !== phase.state || verdict.reason !== phase.reason) {
          await applyVerdict(tx, phase, verdict, now);
          // A verdict can move tasks between blocked and pending even when the phase's state stays
          // (a phase `retry` put back to waiting still has blocked tasks): counts may be stale.
          counts.clear();
          phase.state = verdict.state;
          phase.reason = verdict.reason;
          passChanged = true;
          changed = true;
        }
      }
      if (!passChanged) break;
    }
    return { changed, waiting: phases.filter((phase) => phase.state === "waiting").length };
  });
}

async function judge(
  phase: PhaseRow,
  byName: Map<string, PhaseRow>,
  countsOf: (name: string) => Promise<PhaseCounts>,
): Promise<{ state: PhaseState; reason: string | null }> {
  const after = JSON.parse(phase.after_json) as string[];
  const gate = JSON.parse(phase.gate_json) as Gate;
  const waitingOn: string[] = [];
  for (const name of after) {
    const dependency = byName.get(name);
    if (!dependency) continue; // dropped from the configs: nothing to wait for
    if (dependency.state === "blocked" || dependency.state === "stopped")
      return { state: "blocked", reason: `phase ${name} is ${dependency.state}` };
    const counts = await countsOf(name);
    if (dependency.state !== "open" || counts.settled < counts.total) {
      waitingOn.push(`${name} (${counts.settled}/${counts.total} settled)`);
      continue;
    }
    const failure = gateFailure(gate, counts, name);
    if (failure) return { state: "blocked", reason: failure };
  }
  if (waitingOn.length > 0) return { state: "waiting", reason: `waiting for ${waitingOn.join(", ")}` };
  return { state: "open", reason: null };
}

function gateFailure(gate: Gate, counts: PhaseCounts, name: string): string | null {
  const ratio = counts.total === 0 ? 1 : counts.succeeded / counts.total;
  if (gate.kind === "all_succeeded" && counts.succeeded < counts.total) {
    return `gate all_succeeded failed: ${counts.total - counts.succeeded} of ${counts.total} tasks of ${name} did not succeed`;
  }
  if (gate.kind === "min_success" && ratio < gate.ratio) {
    return `gate min_success ${gate.ratio} failed: ${name} succeeded ${counts.succeeded}/${counts.total} (${(ratio * 100).toFixed(1)}%)`;
  }
  return null;
}

/**
 * Stops a phase that failed fast: nothing more of it is leased, its pending tasks are blocked
 * (so the sweep can finish, and phases `after` it are judged), until `retry` reopens it.
 * Returns false if it was stopped or blocked already.
 */
export async function stopPhase(db: Db, name: string, reason: string, now: number): Promise<boolean> {
  const stopped = await db.transaction(async (tx) => {
    const phase = await tx.one<PhaseRow>(
      "SELECT name, after_json, gate_json, state, reason FROM phases WHERE name = $1 AND active = 1",
      [name],
    );
    if (!phase || phase.state === "stopped" || phase.state === "blocked") return false;
    await applyVerdict(tx, phase, { state: "stopped", reason }, now);
    return true;
  });
  // Phases after it wait for it: judged now, on its settled tasks.
  if (stopped) await evaluateGates(db, now);
  return stopped;
}

async function applyVerdict(
  tx: Db,
  phase: PhaseRow,
  verdict: { state: PhaseState; reason: string | null },
  now: number,
): Promise<void> {
  await tx.run("UPDATE phases SET state = $2, reason = $3 WHERE name = $1", [
    phase.name,
    verdict.state,
    verdict.reason,
  ]);
  // A task runs if any of its phases is open; it is blocked only if all of its phases are.
  await tx.run(
    `UPDATE tasks SET
       runnable = CASE WHEN EXISTS (SELECT 1 FROM placements p JOIN phases f ON f.name = p.phase
                                     WHERE p.task_id = tasks.id AND p.active = 1 AND f.state = 'open')
                       THEN 1 ELSE 0 END,
       state = CASE
         WHEN state IN ('pending', 'blocked') AND NOT EXISTS (
                SELECT 1 FROM placements p JOIN phases f ON f.name = p.phase
                 WHERE p.task_id = tasks.id AND p.active = 1 AND f.state NOT IN ('blocked', 'stopped'))
           THEN 'blocked'
         WHEN state = 'blocked' THEN 'pending'
         ELSE state END
     WHERE id IN (SELECT task_id FROM placements WHERE phase = $1 AND active = 1)`,
    [phase.name],
  );
  await recordEvent(tx, now, `phase_${verdict.state}`, null, { phase: phase.name, reason: verdict.reason });
}
