import type { Db } from "../ledger/db.js";
import { type Counts, taskCounts } from "../ledger/taskCounts.js";

/** One look at a run: counts by state and what runs now. */
export interface ProgressSample {
  counts: Counts;
  running: string[];
  at: number;
}

/** Where a run's progress goes (the CLI's ProgressView). */
export interface ProgressSink {
  update(sample: ProgressSample, force?: boolean): void;
  note(message: string): void;
}

/**
 * Samples a run's progress into `sink` every `everyMs`. Tasks the agent holds ahead
 * (`heldCount`) are running in the ledger but wait here: they are shown as pending. `running`
 * names what runs now, by attempt id. `stop` ends the ticks; `refresh(true)` draws once more.
 */
export function startProgress(
  db: Db,
  sink: ProgressSink,
  running: ReadonlyMap<number, string>,
  heldCount: () => number,
  everyMs = 250,
): { refresh: (force?: boolean) => Promise<void>; stop: () => void } {
  let refreshing = false;
  const refresh = async (force = false): Promise<void> => {
    if (refreshing && !force) return;
    refreshing = true;
    try {
      const counts = await taskCounts(db);
      const held = Math.min(heldCount(), counts.running);
      sink.update(
        {
          counts: { ...counts, running: counts.running - held, pending: counts.pending + held },
          running: [...running.values()],
          at: Date.now(),
        },
        force,
      );
    } finally {
      refreshing = false;
    }
  };
  // The progress line is a view: a refresh that fails (the ledger unreachable a moment) is told
  // once, and the next tick tries again — never a rejection that would end the run.
  let refreshFailed = false;
  const ticker = setInterval(() => {
    refresh().then(
      () => {
        refreshFailed = false;
      },
      (error: unknown) => {
        if (!refreshFailed)
          sink.note(
            `labsweep: progress not refreshed: ${error instanceof Error ? error.message : String(error)}`,
          );
        refreshFailed = true;
      },
    );
  }, everyMs);
  return { refresh, stop: () => clearInterval(ticker) };
}
