import type { Counts, PhaseProgress, RunningTask } from "../ledger/taskCounts.js";
import { classifyRunning } from "./runningTasks.js";

/**
 * The ledger's counts as `status` tells them: `running` only for tasks whose process runs; tasks
 * held ahead ("next up") and those of a `labsweep run` that was killed ("orphaned", requeued by
 * the next run) count as pending; `waiting` (their phase's `after` phases are not done) apart
 * from `blocked` (a gate failed).
 */
export interface LiveCounts extends Counts {
  waiting: number;
  /** Leased ahead by a run, not started: part of `pending`. */
  nextUp: number;
  /** Running when their run stopped (kill -9): part of `pending`. */
  orphaned: number;
}

export interface LivePhase extends PhaseProgress {
  waiting: number;
  nextUp: number;
  orphaned: number;
}

export interface LiveView {
  counts: LiveCounts;
  phases: LivePhase[];
}

export function liveCounts(
  counts: Counts,
  phases: PhaseProgress[],
  running: RunningTask[],
  waiting: { total: number; byPhase: Map<string, number> },
  classify = classifyRunning,
): LiveView {
  const total: LiveCounts = { ...counts, waiting: waiting.total, nextUp: 0, orphaned: 0 };
  total.blocked -= waiting.total;
  const byName = new Map<string, LivePhase>();
  const live = phases.map((phase) => {
    const inPhase = waiting.byPhase.get(phase.name) ?? 0;
    const row: LivePhase = {
      ...phase,
      blocked: phase.blocked - inPhase,
      waiting: inPhase,
      nextUp: 0,
      orphaned: 0,
    };
    byName.set(phase.name, row);
    return row;
  });
  for (const task of running) {
    const kind = classify(task);
    if (kind === "running") continue;
    for (const target of [total, ...task.phases.map((name) => byName.get(name))]) {
      if (!target) continue;
      target.running -= 1;
      target.pending += 1;
      target[kind] += 1;
    }
  }
  return { counts: total, phases: live };
}

/** The text `status` prints for these counts: a total, then one line per phase. */
export function statusLines({ counts, phases }: LiveView): string[] {
  const done = counts.succeeded + counts.failed;
  const lines = [`${done}/${counts.unique} done: ${countsText(counts, true)}`];
  for (const phase of phases) {
    const why = phase.reason ? `  — ${phase.reason}` : "";
    // Shown only where they change anything: most sweeps are never paused and have one priority.
    const paused = Number(phase.paused) ? " [paused: nothing new starts; labsweep resume]" : "";
    const priority = Number(phase.priority ?? 0) !== 0 ? ` priority ${phase.priority}` : "";
    lines.push(
      `  ${phase.name}: ${phase.succeeded}/${phase.unique} succeeded, ${countsText(phase, false)} [${phase.state}]${paused}${priority}${why}`,
    );
  }
  if (counts.orphaned > 0)
    lines.push(`${counts.orphaned} were running when the run stopped; they will be requeued at the next run`);
  return lines;
}

function countsText(counts: LiveCounts, all: boolean): string {
  const parts = [
    ...(all ? [`${counts.succeeded} succeeded`] : []),
    `${counts.failed} failed`,
    `${counts.running} running`,
    `${counts.pending} pending${counts.nextUp > 0 ? ` (${counts.nextUp} next up)` : ""}`,
  ];
  // The total always names every state; a phase only those it has.
  for (const key of ["waiting", "blocked", "cancelled"] as const)
    if (all || counts[key] > 0) parts.push(`${counts[key]} ${key}`);
  return parts.join(", ");
}
