import type { TaskState } from "../../protocol/interfaces.js";
import type { Db } from "../db.js";
import { type ResultDirError, resultDirErrors } from "../resultDirErrors.js";
import { type Counts, type PhaseProgress, phaseProgress } from "../taskCounts.js";

/** Tasks per stored state (no gate split), for exact page counts of a state filter. */
export type StateCounts = Record<TaskState, number>;

export interface PhaseOverview extends PhaseProgress {
  /** Raw counts by stored state; null when the phase's tasks are shared with other phases. */
  byState: StateCounts | null;
}

/** Everything the dashboard's overview shows, computed in one go. */
export interface Overview {
  /** When it was computed (epoch ms). */
  at: number;
  /** The ledger's event id it reflects: a newer id means the ledger changed since. */
  version: number;
  totals: Counts;
  byState: StateCounts;
  phases: PhaseOverview[];
  /** Completions (succeeded or failed) per minute over the recent window; null before any. */
  rate: { perMinute: number | null; completions: number; windowSeconds: number };
  eta: {
    /** Seconds until every runnable or waiting task is done; null when it cannot be told yet. */
    seconds: number | null;
    /** Mean wall time of recent successes. */
    meanTaskSeconds: number | null;
    /** Slots of connected machines. */
    slots: number;
    basis: "durations" | "rate" | null;
  };
  /** Phases not open: waiting for their `after` phases or blocked by a gate, and why. */
  gates: Array<{ phase: string; state: string; reason: string | null }>;
  /** Output dirs whose final_results.csv cannot be written, why, and how many rows wait. */
  resultErrors: ResultDirError[];
  /** How long computing this took (ms), for throttling. */
  costMs: number;
}

export interface OverviewSources {
  /** Slots of the machines working now (connected agents and the local one). */
  slots(): Promise<number>;
  /** (Default: Date.now) */
  now?: () => number;
  /** Completions in this window make the rate. (Default: 10 min) */
  rateWindowMs?: number;
}

const STATES: TaskState[] = ["pending", "running", "succeeded", "failed", "blocked", "cancelled"];

/** The ledger's newest event id: it moves whenever a task starts, ends, or the sweep changes. */
export async function ledgerVersion(db: Db): Promise<number> {
  const row = await db.one<{ id: number | null }>("SELECT max(id) AS id FROM events");
  return Number(row?.id ?? 0);
}

/** Whether the configs were synced (a `sweep_synced` event) after event `eventId`. */
export async function syncedSince(db: Db, eventId: number): Promise<boolean> {
  const row = await db.one("SELECT 1 AS yes FROM events WHERE id > $1 AND kind = 'sweep_synced' LIMIT 1", [
    eventId,
  ]);
  return Boolean(row);
}

/**
 * Whether every active task has exactly one active placement, in its declaring phase — then
 * per-phase counts can be read from the tasks_by_phase index alone instead of a join over all
 * placements. It changes only when configs are synced, so callers keep the answer until then.
 */
export async function placementsAreSimple(db: Db): Promise<boolean> {
  const row = await db.one<{ placed: number; foreign: number; tasks: number }>(
    `SELECT count(*) AS placed,
            coalesce(sum(CASE WHEN p.phase <> t.phase OR t.active = 0 THEN 1 ELSE 0 END), 0) AS "foreign",
            (SELECT count(*) FROM tasks WHERE active = 1) AS tasks
       FROM placements p JOIN tasks t ON t.id = p.task_id
      WHERE p.active = 1`,
  );
  return Number(row?.foreign ?? 1) === 0 && Number(row?.placed) === Number(row?.tasks);
}

/** Computes the overview. `simple` is placementsAreSimple's (cached) answer. */
export async function computeOverview(db: Db, sources: OverviewSources, simple: boolean): Promise<Overview> {
  const started = performance.now();
  const now = (sources.now ?? Date.now)();
  const version = await ledgerVersion(db);
  const { totals, byState, perPhase } = await stateCounts(db);
  const phaseRows = await db.all<{
    name: string;
    state: PhaseProgress["state"];
    reason: string | null;
    configFile: string;
    priority: number;
    paused: number;
  }>(
    `SELECT name, state, reason, config_file AS "configFile", priority, paused
       FROM phases WHERE active = 1 ORDER BY position`,
  );
  let phases: PhaseOverview[];
  if (simple) {
    phases = phaseRows.map((phase) => {
      const counts = perPhase.get(phase.name);
      return { ...phase, ...(counts?.counts ?? emptyCounts()), byState: counts?.byState ?? emptyStates() };
    });
  } else {
    phases = (await phaseProgress(db)).map((phase) => ({ ...numeric(phase), byState: null }));
  }
  const rate = await completionRate(db, now, sources.rateWindowMs ?? 10 * 60_000);
  const eta = await estimate(db, sources, totals, byState, rate.perMinute);
  return {
    at: now,
    version,
    totals,
    byState,
    phases,
    rate,
    eta,
    gates: phaseRows
      .filter((phase) => phase.state !== "open")
      .map((phase) => ({ phase: phase.name, state: phase.state, reason: phase.reason })),
    resultErrors: await resultDirErrors(db),
    costMs: performance.now() - started,
  };
}

/** Active tasks counted in one scan of the tasks_by_phase index: in all, by state, per phase. */
async function stateCounts(db: Db): Promise<{
  totals: Counts;
  byState: StateCounts;
  perPhase: Map<string, { counts: Counts; byState: StateCounts }>;
}> {
  const rows = await db.all<{ phase: string; state: TaskState; runnable: number; n: number }>(
    `SELECT phase, state, runnable, count(*) AS n FROM tasks WHERE active = 1 GROUP BY phase, state, runnable`,
  );
  const totals = emptyCounts();
  const byState = emptyStates();
  const perPhase = new Map<string, { counts: Counts; byState: StateCounts }>();
  for (const row of rows) {
    const n = Number(row.n);
    const phase = perPhase.get(row.phase) ?? { counts: emptyCounts(), byState: emptyStates() };
    perPhase.set(row.phase, phase);
    for (const target of [totals, phase.counts]) addCount(target, row.state, Number(row.runnable), n);
    byState[row.state] = (byState[row.state] ?? 0) + n;
    phase.byState[row.state] = (phase.byState[row.state] ?? 0) + n;
  }
  return { totals, byState, perPhase };
}

/** Completions of this run's tasks per minute over the recent window. */
async function completionRate(db: Db, now: number, windowMs: number): Promise<Overview["rate"]> {
  const recent = await db.one<{ n: number; first: number | null }>(
    `SELECT count(*) AS n, min(finished_at) AS first FROM tasks
      WHERE finished_at >= $1 AND state IN ('succeeded', 'failed') AND coalesce(origin, 'run') = 'run'`,
    [now - windowMs],
  );
  const completions = Number(recent?.n ?? 0);
  // Over the whole window, or since the first completion in it when the run is younger (but at
  // least 10 s, so two quick tasks do not promise a rate nobody will see).
  const span =
    recent?.first == null ? windowMs : Math.min(windowMs, Math.max(10_000, now - Number(recent.first)));
  const perMinute = completions === 0 ? null : (completions * 60_000) / span;
  return { perMinute, completions, windowSeconds: windowMs / 1000 };
}

/** The ETA: from recent durations over the working slots, else from the completion rate. */
async function estimate(
  db: Db,
  sources: OverviewSources,
  totals: Counts,
  byState: StateCounts,
  perMinute: number | null,
): Promise<Overview["eta"]> {
  const mean = await db.one<{ mean: number | null }>(
    `SELECT avg(wall_seconds) AS mean FROM (
       SELECT wall_seconds FROM tasks
        WHERE finished_at IS NOT NULL AND state = 'succeeded' AND origin = 'run' AND wall_seconds IS NOT NULL
        ORDER BY finished_at DESC LIMIT 200) recent`,
  );
  const meanTaskSeconds = mean?.mean == null ? null : Number(mean.mean);
  const slots = await sources.slots();
  const waiting = totals.blocked - byState.blocked;
  const queued = totals.pending + waiting;
  const eta: Overview["eta"] = { seconds: null, meanTaskSeconds, slots, basis: null };
  if (queued + totals.running === 0) return { ...eta, seconds: 0, basis: "durations" };
  if (meanTaskSeconds !== null && slots > 0) {
    // Queued tasks share the slots; running ones are on average half done.
    const seconds = (queued * meanTaskSeconds + (totals.running * meanTaskSeconds) / 2) / slots;
    return { ...eta, seconds, basis: "durations" };
  }
  if (perMinute !== null)
    return { ...eta, seconds: ((queued + totals.running) / perMinute) * 60, basis: "rate" };
  return eta;
}

function emptyCounts(): Counts {
  return { unique: 0, succeeded: 0, failed: 0, running: 0, pending: 0, blocked: 0, cancelled: 0 };
}

function emptyStates(): StateCounts {
  return Object.fromEntries(STATES.map((state) => [state, 0])) as StateCounts;
}

/** Adds n tasks of a stored state to counts the way `taskCounts` splits them (gates held = blocked). */
function addCount(counts: Counts, state: TaskState, runnable: number, n: number): void {
  counts.unique += n;
  if (state === "pending") {
    if (runnable === 1) counts.pending += n;
    else counts.blocked += n;
  } else counts[state] += n;
}

/** Drivers may return counts as strings (PostgreSQL's bigint): make them numbers. */
function numeric(phase: PhaseProgress): PhaseProgress {
  const out = { ...phase };
  for (const key of ["unique", "succeeded", "failed", "running", "pending", "blocked", "cancelled"] as const)
    out[key] = Number(phase[key]);
  return out;
}
