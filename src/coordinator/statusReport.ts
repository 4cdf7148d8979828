import type { Db } from "../ledger/db.js";
import {
  type RecentFailure,
  type RecentRequeue,
  recentFailures,
  recentRequeues,
} from "../ledger/reads/recentTrouble.js";
import { type ResultDirError, resultDirErrors } from "../ledger/resultDirErrors.js";
import {
  droppedTaskCount,
  phaseProgress,
  runningTasks,
  taskCounts,
  type UsageTotals,
  usageTotals,
  waitingCounts,
} from "../ledger/taskCounts.js";
import { type LiveCounts, type LivePhase, liveCounts } from "./liveCounts.js";

/**
 * What `labsweep status` reports, read from the ledger alone: the one report behind both the
 * local command and `GET /status`, so `status` and `status --server` print the same.
 */
export interface StatusReport extends LiveCounts {
  /** Tasks in the ledger that no config names any more (kept). */
  dropped: number;
  phases: LivePhase[];
  recentFailures: RecentFailure[];
  recentRequeues: RecentRequeue[];
  usage: UsageTotals;
  resultErrors: ResultDirError[];
}

/** Reads the report. The task counts are read first: a ledger without tables fails there. */
export async function statusReport(db: Db): Promise<StatusReport> {
  const counts = await taskCounts(db);
  const phases = await phaseProgress(db);
  const dropped = await droppedTaskCount(db);
  const usage = await usageTotals(db);
  const failures = await recentFailures(db);
  const requeues = await recentRequeues(db);
  const view = liveCounts(counts, phases, await runningTasks(db), await waitingCounts(db));
  return {
    ...view.counts,
    dropped,
    phases: view.phases,
    recentFailures: failures,
    recentRequeues: requeues,
    usage,
    resultErrors: await resultDirErrors(db),
  };
}
