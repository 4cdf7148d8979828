import { EventEmitter } from "node:events";
import { cancelTasks } from "../ledger/cancelTasks.js";
import { type ClaimRequest, nextBackoffExpiry } from "../ledger/claimTask.js";
import { claimTasks } from "../ledger/claimTasks.js";
import type { Db } from "../ledger/db.js";
import { evaluateGates, judgeGates } from "../ledger/evaluateGates.js";
import type { FinishResult } from "../ledger/finishAttempt.js";
import { type FinishRefusal, finishAttempts } from "../ledger/finishAttempts.js";
import { claimableCount, hasUnfinishedTasks } from "../ledger/reads/unfinished.js";
import { renewLeases } from "../ledger/recoverAbandoned.js";
import { owedRowCount } from "../ledger/resultRows.js";
import { retryFailed } from "../ledger/retryFailed.js";
import { type Counts, taskCounts } from "../ledger/taskCounts.js";
import type { WakeBus } from "../ledger/wakeBus.js";
import { describe, type Logger, logger } from "../log/logger.js";
import { allocateTask, type Capacity, consume } from "../protocol/capacity.js";
import type { Lease } from "../protocol/interfaces.js";
import { writeOwedResultsOnce } from "../results/resultsWriter.js";
import { AgentOffers } from "./agentOffers.js";
import { removeArtifactFiles } from "./artifactStore.js";
import { FailFast } from "./failFast.js";
import { type FinishReport, finalFailures, logFinalFailures } from "./finalFailure.js";
import type { Notifications } from "./notifications.js";

/** How long finished rows may wait to be batched into one append per results file. */
const RESULTS_BATCH_MS = 200;
/** Retries of a result dir that could not be written: the first after 5 s, doubling to once a minute. */
const RESULTS_RETRY_MS = 5000;
const RESULTS_RETRY_MAX_MS = 60_000;

/**
 * How long finishes trust "no phase is waiting" before asking again. A sync or `retry` through
 * this coordinator says so at once (phasesChanged); another process's is seen this late at most.
 */
const NO_WAITING_PHASES_MS = 1000;

export type { FinishReport } from "./finalFailure.js";

export interface CoordinatorOptions {
  stateDir: string;
  /** How long a lease lasts without a heartbeat. (Default: 12 s) */
  leaseMs?: number;
  /** Injectable clock for tests. (Default: Date.now) */
  now?: () => number;
  /** Where background failures are reported. (Default: stderr) */
  warn?: (message: string) => void;
  /**
   * Carries "work may be claimable" to and from the other coordinators on this ledger (replicas
   * on one PostgreSQL database). (Default: none; this coordinator is alone)
   */
  wakeBus?: WakeBus;
  /**
   * How soon a result dir that could not be written is tried again when no task finishes;
   * doubled after each failed try, up to 60 s. (Default: 5 s)
   */
  resultsRetryMs?: number;
  /** The sweep's `notify:` entries at work: told of final failures and settled tasks. (Default: none) */
  notifications?: Notifications;
}

export interface LeaseRequest {
  worker: string;
  host: string;
  capacity: Capacity;
}

/** A report in a batch; with `worker`, refused unless the attempt is that worker's. */
export interface ReportItem {
  attemptId: number;
  report: FinishReport;
  worker?: string;
}

/**
 * The scheduler over the ledger: hands out tasks that fit an agent's capacity, records how
 * attempts end, keeps gates and result files up to date, and wakes idle agents the moment new
 * work exists. The same object serves the in-process agent of `labsweep run` and, through the
 * HTTP API, remote agents.
 */
export class Coordinator {
  readonly leaseMs: number;
  private readonly now: () => number;
  private readonly log: Logger;
  private readonly wake = new EventEmitter();
  private flushing: Promise<void> | null = null;
  private flushAgain = false;
  /** The pause in which a flush gathers rows; drainResults ends it early. */
  private gathering: { end: () => void } | null = null;
  /** The pending retry of result dirs that failed (retryResultsLater). */
  private resultsRetry: NodeJS.Timeout | null = null;
  private retriesStopped = false;
  private resultsRetryMs: number;
  /** Until when (performance.now()) finishes may skip judging gates: none was waiting. */
  private noWaitingPhasesUntil = 0;
  private readonly failFast = new FailFast(() => this.now());
  /** What its agents offer new tasks now (for `labsweep explain`): they record it as they lease. */
  readonly offers = new AgentOffers();

  constructor(
    readonly db: Db,
    private readonly options: CoordinatorOptions,
  ) {
    this.leaseMs = options.leaseMs ?? 12_000;
    this.resultsRetryMs = options.resultsRetryMs ?? RESULTS_RETRY_MS;
    this.now = options.now ?? Date.now;
    this.log = logger("labsweep", options.warn);
    this.wake.setMaxListeners(0);
    options.wakeBus?.subscribe(() => this.wake.emit("work"));
  }

  /** A task that fits, with a fresh attempt, or null if nothing fits right now. */
  async lease(request: LeaseRequest): Promise<Lease | null> {
    return (await this.leaseMany(request, 1))[0] ?? null;
  }

  /**
   * Up to `max` tasks that fit together: each is matched against the capacity the previous ones
   * left. Empty if nothing fits right now.
   */
  async leaseMany(request: LeaseRequest, max: number): Promise<Lease[]> {
    return (await this.reportAndLease([], request, max)).leases;
  }

  /**
   * One agent's round trip: records its reports, then leases up to `max` tasks that fit (as
   * leaseMany), in one transaction: on PostgreSQL the pair costs one BEGIN and one COMMIT, and
   * one commit writes the index pages its statements share once. Reports come first: a task
   * reported here is settled before anything is leased. A report naming a `worker` is refused
   * unless its attempt is that worker's. Gates, result files and waiting agents are seen to once
   * for the batch, after the commit.
   */
  async reportAndLease(
    items: ReportItem[],
    request: LeaseRequest | null,
    max: number,
  ): Promise<{ results: Array<FinishResult | FinishRefusal>; leases: Lease[] }> {
    const leasing = request !== null && max >= 1;
    if (items.length === 0 && !leasing) return { results: [], leases: [] };
    // Counted down as tasks are placed; each run of the transaction starts from the full capacity.
    let capacity = request?.capacity;
    const fits: ClaimRequest["fits"] = (policy) => {
      const placement = capacity ? allocateTask(policy, capacity) : null;
      if (capacity && placement) capacity = consume(capacity, policy.resources, placement.gpuIds);
      return placement;
    };
    // Reports and leases reach their rows by id and through the claimable index: keyed.
    const { results, leases } = await this.db.transaction(
      async (tx) => {
        capacity = request?.capacity;
        const now = this.now();
        const reports = items.map(({ attemptId, report, worker }) => ({
          attemptId,
          outcome: report.outcome,
          worker,
          artifacts: report.artifacts,
        }));
        const results = items.length > 0 ? await finishAttempts(tx, reports, now) : [];
        // In the failures' own transaction: no crash can record one without its notification.
        await this.options.notifications?.recordFinalFailures(tx, finalFailures(items, results), now);
        // Before leasing: a phase these failures stop hands out nothing more in this round.
        await this.failFast.afterReports(tx, items);
        return {
          results,
          leases:
            request && leasing
              ? await claimTasks(
                  tx,
                  { worker: request.worker, host: request.host, now, leaseMs: this.leaseMs, fits },
                  max,
                )
              : [],
        };
      },
      { keyed: true },
    );
    if (items.length > 0 && (await this.afterFinish(items, results)) && request && leases.length < max) {
      // A finish opened a phase: its tasks were not claimable yet inside the transaction.
      const rest = { ...request, capacity: capacity ?? request.capacity };
      leases.push(...(await this.leaseMany(rest, max - leases.length)));
    }
    return { results, leases };
  }

  /**
   * Resolves as soon as new work may be claimable (a task finished, a retry's backoff ran out,
   * a gate opened, configs were added) or after `maxWaitMs`. Agents call it between leases
   * instead of polling.
   */
  async awaitWork(maxWaitMs: number): Promise<void> {
    const backoff = await nextBackoffExpiry(this.db, this.now());
    const wait = backoff === null ? maxWaitMs : Math.min(maxWaitMs, Math.max(0, backoff - this.now()));
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wake.off("work", done);
        resolve();
      };
      const timer = setTimeout(done, wait);
      this.wake.once("work", done);
    });
  }

  /** Tells waiting agents — this coordinator's and the other replicas' — that work may be claimable. */
  notifyWork(): void {
    this.wake.emit("work");
    this.options.wakeBus?.publish();
  }

  /** Renews leases; returns attempts that are no longer current (their tasks moved on). */
  async heartbeat(attemptIds: number[]): Promise<number[]> {
    return renewLeases(this.db, attemptIds, this.now() + this.leaseMs);
  }

  /**
   * Attempts whose worker is gone (it died, or stopped renewing their leases): their tasks go
   * back to pending, no retry spent, or fail once lost `max_lost` times. Returns how many were
   * requeued.
   */
  async requeueLost(attemptIds: number[], why: string): Promise<number> {
    if (attemptIds.length === 0) return 0;
    const report = { outcome: { kind: "lost" as const, error: why } };
    const results = await this.finishMany(attemptIds.map((attemptId) => ({ attemptId, report })));
    return results.filter((result) => result.taskState === "pending").length;
  }

  async finish(attemptId: number, report: FinishReport): Promise<FinishResult> {
    return (await this.finishMany([{ attemptId, report }]))[0] as FinishResult;
  }

  /**
   * Records several attempts' ends (a batch from one agent) in one transaction; gates, result
   * files and waiting agents are seen to once for the batch.
   */
  async finishMany(items: Array<{ attemptId: number; report: FinishReport }>): Promise<FinishResult[]> {
    // Items without a worker are never refused: an unknown attempt throws.
    return (await this.reportAndLease(items, null, 0)).results as FinishResult[];
  }

  /** After a batch of reports committed; true when gates changed (new work may be claimable). */
  private async afterFinish(
    items: ReportItem[],
    results: Array<FinishResult | FinishRefusal>,
  ): Promise<boolean> {
    try {
      const recorded = results.filter((result): result is FinishResult => "taskState" in result);
      await logFinalFailures(this.db, this.options.stateDir, items, results, this.now());
      const discarded = recorded.flatMap((result) => result.discarded ?? []);
      if (discarded.length > 0) await removeArtifactFiles(this.db, discarded, this.log);
      if (recorded.some((result) => result.taskState === "succeeded")) this.flushResults();
      if (recorded.some((result) => result.taskState === "succeeded" || result.taskState === "failed")) {
        const opened = await this.judgeGatesAfterFinish();
        this.options.notifications?.tasksSettled(); // after the gates: a blocked phase is finished too
        return opened;
      }
      return false;
    } finally {
      this.notifyWork();
    }
  }

  /**
   * Gates after tasks settled. Most sweeps have no phase waiting, and then asking the ledger on
   * every finish was a round trip per batch for nothing: that answer is remembered a while.
   */
  private async judgeGatesAfterFinish(): Promise<boolean> {
    if (performance.now() < this.noWaitingPhasesUntil) return false;
    const { changed, waiting } = await judgeGates(this.db, this.now());
    if (waiting === 0) this.noWaitingPhasesUntil = performance.now() + NO_WAITING_PHASES_MS;
    return changed;
  }

  /** A sync or `retry` may have put phases back to waiting: judge gates on the next finish. */
  phasesChanged(): void {
    this.noWaitingPhasesUntil = 0;
  }

  /** Counts by state, after letting gates catch up. */
  async counts(): Promise<Counts> {
    return taskCounts(this.db);
  }

  /** True when nothing is running and nothing can be claimed now or later. */
  async isFinished(): Promise<boolean> {
    if (await evaluateGates(this.db, this.now())) this.notifyWork();
    // An index probe, not a count: idle agents ask this on every wake-up.
    return !(await hasUnfinishedTasks(this.db));
  }

  /**
   * Cancels tasks (by id, or every task of a phase) that have not finished: they will not run
   * again, and running attempts are returned so their agents can be told to stop them.
   */
  async cancel(filter: {
    taskIds?: number[];
    phase?: string;
  }): Promise<{ tasks: number; running: Array<{ worker: string; attemptId: number }> }> {
    const result = await cancelTasks(this.db, filter, this.now());
    if (result.tasks > 0) await evaluateGates(this.db, this.now());
    if (result.tasks > 0) this.options.notifications?.tasksSettled();
    this.notifyWork();
    return result;
  }

  /** Gives failed tasks a fresh set of retries (all, or one phase's). */
  async retryFailed(phase?: string): Promise<number> {
    const count = await retryFailed(this.db, this.now(), { phase });
    this.phasesChanged();
    await evaluateGates(this.db, this.now());
    this.notifyWork();
    return count;
  }

  /** Tasks that could be leased right now by an agent with room for them. */
  async claimableCount(): Promise<number> {
    return claimableCount(this.db, this.now());
  }

  /**
   * Starts writing owed result rows in the background; rows arriving meanwhile are batched.
   * `now`: no pause to gather rows first (nothing more is coming).
   */
  flushResults(options: { now?: boolean } = {}): Promise<void> {
    if (this.flushing) {
      this.flushAgain = true;
      return this.flushing;
    }
    this.flushing = (async () => {
      // Let rows gather for a moment: one append and one fsync per batch, not per task.
      if (!options.now) await this.gather();
      do {
        this.flushAgain = false;
        try {
          // Another replica holding the writer's duty may have missed rows committed just now:
          // look again shortly rather than leave them for the next finish.
          const drained = await writeOwedResultsOnce(this.db);
          if (drained === null) {
            await new Promise((resolve) => setTimeout(resolve, RESULTS_BATCH_MS));
            this.flushAgain = (await owedRowCount(this.db)) > 0;
          } else if (drained.failed.length === 0) {
            this.resultsRetryMs = this.options.resultsRetryMs ?? RESULTS_RETRY_MS;
          } else {
            // Said once per new error, not on every retry; status and the dashboard show it too.
            for (const dir of drained.failed)
              if (dir.news) this.log.warn(`cannot write results to ${dir.outputDir}: ${dir.error}`);
            this.retryResultsLater();
          }
        } catch (error) {
          // The rows stay owed in the ledger and are retried on the next flush and at the next start.
          this.log.warn(`could not write results: ${describe(error)}`);
          return;
        }
      } while (this.flushAgain);
    })().finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  /**
   * A dir that failed is tried again with the next finish, and also after a while when no task
   * finishes any more (the user may fix it: chmod, a repaired CSV). One timer at a time; it does
   * not keep the process alive, and stopRetryingResults ends it.
   */
  private retryResultsLater(): void {
    if (this.resultsRetry !== null || this.retriesStopped) return;
    this.resultsRetry = setTimeout(() => {
      this.resultsRetry = null;
      if (!this.retriesStopped) void this.flushResults();
    }, this.resultsRetryMs);
    this.resultsRetryMs = Math.min(2 * this.resultsRetryMs, RESULTS_RETRY_MAX_MS);
    this.resultsRetry.unref();
  }

  /** Ends the retries of failing result dirs: the ledger is about to close. */
  stopRetryingResults(): void {
    this.retriesStopped = true;
    if (this.resultsRetry !== null) clearTimeout(this.resultsRetry);
    this.resultsRetry = null;
  }

  /** Waits for result files to catch up with the ledger, at once: nothing more is coming. */
  async drainResults(): Promise<void> {
    this.gathering?.end();
    while (this.flushing) await this.flushing;
    await this.flushResults({ now: true });
  }

  /** The flush's pause: RESULTS_BATCH_MS, or until drainResults ends it. */
  private gather(): Promise<void> {
    return new Promise((resolve) => {
      const end = () => {
        clearTimeout(timer);
        this.gathering = null;
        resolve();
      };
      const timer = setTimeout(end, RESULTS_BATCH_MS);
      this.gathering = { end };
    });
  }
}
