import { basename, extname } from "node:path";
import type { Db } from "../ledger/db.js";
import { attemptContext } from "../ledger/reads/attempts.js";
import { hasUnfinishedTasks } from "../ledger/reads/unfinished.js";
import { type Counts, phaseProgress, taskCounts } from "../ledger/taskCounts.js";
import type { NotifyEvent, Params } from "../sweep/types.js";

// What each notification says: the happenings the outbox records (one per `about`) with their
// fields and one human-readable line. Final failures and lost agents are edges, recorded in the
// transaction that makes them; a phase or the sweep finishing and a failure rate crossed are
// states, found by levelHappenings whenever it is asked (the same state is the same `about`).

/** Which sweep a notification is about, as receivers see it. */
export interface SweepIdentity {
  /** The first config's file name without its extension. */
  name: string;
  /** Every config file, absolute. */
  configs: string[];
}

export function sweepIdentity(configs: readonly string[]): SweepIdentity {
  const first = configs[0] ?? "sweep";
  return { name: basename(first, extname(first)), configs: [...configs] };
}

/** One thing that happened, before it is addressed to the entries that want it. */
export interface Happening {
  event: NotifyEvent | "test";
  /** Unique per happening: the outbox records one notification per entry and `about`. */
  about: string;
  /** The payload's fields beside `id`, `event`, `text` and `content`. */
  fields: Record<string, unknown>;
  text: string;
}

/** How a finished sweep's or phase's tasks ended. */
interface EndCounts {
  total: number;
  succeeded: number;
  failed: number;
  blocked: number;
  cancelled: number;
}

const endCounts = (counts: Counts): EndCounts => ({
  total: Number(counts.unique),
  succeeded: Number(counts.succeeded),
  failed: Number(counts.failed),
  blocked: Number(counts.blocked),
  cancelled: Number(counts.cancelled),
});

const countsKey = (counts: EndCounts): string =>
  `${counts.succeeded}/${counts.failed}/${counts.blocked}/${counts.cancelled}/${counts.total}`;

const countsText = (counts: EndCounts): string =>
  `${counts.succeeded} succeeded, ${counts.failed} failed${counts.blocked ? `, ${counts.blocked} blocked` : ""}${counts.cancelled ? `, ${counts.cancelled} cancelled` : ""} of ${counts.total}`;

/** `lr=0.1, seed=2`, shortened: a grid point can have many parameters. */
function paramsText(params: Params): string {
  const text = Object.entries(params)
    .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`)
    .join(", ");
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

/** A task that failed for good (its retries, or its losses, spent), read in the failure's transaction. */
export async function taskFailed(
  tx: Db,
  sweep: SweepIdentity,
  attemptId: number,
  error: string,
  exitCode: number | null,
): Promise<Happening | null> {
  const row = await attemptContext(tx, attemptId);
  if (!row) return null;
  const phases = (row.phases ?? "").split(",").filter(Boolean);
  const params = JSON.parse(row.params_json) as Params;
  const taskId = Number(row.task_id);
  const errorLine = error.split("\n")[0] ?? "";
  return {
    event: "task_failed",
    // A task failed again after `labsweep retry` is a new happening: its attempt is another.
    about: `task_failed:${taskId}:${attemptId}`,
    fields: {
      sweep,
      phase: phases[0] ?? null,
      phases,
      task: { id: taskId, params, attempt: Number(row.number), exit_code: exitCode, error: errorLine },
      error: errorLine,
    },
    text: `labsweep ${sweep.name}: task ${taskId}${phases.length ? ` of phase ${phases.join(", ")}` : ""} failed for good after attempt ${row.number} (${paramsText(params)}): ${errorLine}`,
  };
}

/** An agent that vanished (its connection closed, or its leases ran out). */
export function agentLost(
  sweep: SweepIdentity,
  agent: { id: string; host?: string | null },
  reason: string,
  now: number,
): Happening {
  return {
    event: "agent_lost",
    about: `agent_lost:${agent.id}:${now}`,
    fields: { sweep, agent: { id: agent.id, host: agent.host ?? null }, reason },
    text: `labsweep ${sweep.name}: agent ${agent.id}${agent.host ? ` on ${agent.host}` : ""} lost (${reason}); its tasks go back to the queue`,
  };
}

/**
 * The states worth a notification now, for the events some entry wants: each finished phase,
 * the finished sweep, and the sweep's failure rate (failed among succeeded + failed, over the
 * whole sweep) when it is at or above one of `thresholds`, judged once `minFinished` tasks have
 * finished (all of them, in a smaller sweep). Counting costs a pass over the tasks:
 * the caller asks at most about once a second.
 */
export async function levelHappenings(
  db: Db,
  sweep: SweepIdentity,
  wanted: { phases: boolean; sweep: boolean; thresholds: Array<{ threshold: number; minFinished: number }> },
): Promise<Happening[]> {
  const found: Happening[] = [];
  if (wanted.phases) {
    for (const phase of await phaseProgress(db)) {
      const counts = endCounts(phase);
      // A waiting phase's tasks count as blocked until it opens: it has not even started.
      const settled = phase.state !== "waiting" && Number(phase.running) === 0 && Number(phase.pending) === 0;
      if (!settled || counts.total === 0) continue;
      found.push({
        event: "phase_finished",
        about: `phase_finished:${phase.name}:${countsKey(counts)}`,
        fields: { sweep, phase: phase.name, state: phase.state, reason: phase.reason, counts },
        text: `labsweep ${sweep.name}: phase ${phase.name} finished — ${countsText(counts)}${phase.state === "blocked" && phase.reason ? ` (blocked: ${phase.reason})` : ""}`,
      });
    }
  }
  if (!wanted.sweep && wanted.thresholds.length === 0) return found;
  const counts = endCounts(await taskCounts(db));
  if (wanted.sweep && counts.total > 0 && !(await hasUnfinishedTasks(db))) {
    found.push({
      event: "sweep_finished",
      about: `sweep_finished:${countsKey(counts)}`,
      fields: { sweep, counts },
      text: `labsweep ${sweep.name}: sweep finished — ${countsText(counts)}`,
    });
  }
  const finished = counts.succeeded + counts.failed;
  const rate = finished === 0 ? 0 : counts.failed / finished;
  for (const { threshold, minFinished } of wanted.thresholds) {
    if (finished === 0 || finished < Math.min(minFinished, counts.total) || rate < threshold) continue;
    found.push({
      event: "failure_rate",
      // Once per entry and ledger: a rate that dips and crosses again is not news.
      about: `failure_rate:${threshold}:${minFinished}`,
      fields: { sweep, threshold, min_finished: minFinished, rate, counts: { ...counts, finished } },
      text: `labsweep ${sweep.name}: ${(rate * 100).toFixed(1)}% of finished tasks failed (${counts.failed} of ${finished}), at or above the failure_rate ${threshold}`,
    });
  }
  return found;
}

/** What `labsweep notify --test` sends. */
export function testHappening(sweep: SweepIdentity, now: number): Happening {
  return {
    event: "test",
    about: `test:${now}`,
    fields: { sweep },
    text: `labsweep ${sweep.name}: a test notification (labsweep notify --test)`,
  };
}
