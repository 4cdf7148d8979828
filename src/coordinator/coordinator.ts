import { EventEmitter } from "node:events";
import { allocate, type Capacity, consume } from "../agent/capacity.js";
import { cancelTasks } from "../ledger/cancelTasks.js";
import { type Claim, claimTask, nextBackoffExpiry } from "../ledger/claimTask.js";
import type { Db } from "../ledger/db.js";
import { evaluateGates } from "../ledger/evaluateGates.js";
import { type AttemptOutcome, type FinishResult, finishAttempt } from "../ledger/finishAttempt.js";
import { renewLeases } from "../ledger/recoverAbandoned.js";
import { owedRowCount } from "../ledger/resultRows.js";
import { retryFailed } from "../ledger/retryFailed.js";
import { type Counts, taskCounts } from "../ledger/taskCounts.js";
import type { WakeBus } from "../ledger/wakeBus.js";
import { logFailedTask } from "../results/failedLog.js";
import { writeOwedResultsOnce } from "../results/resultsWriter.js";

/** How long finished rows may wait to be batched into one append per results file. */
const RESULTS_BATCH_MS = 200;

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
}

export interface LeaseRequest {
  worker: string;
  host: string;
  capacity: Capacity;
}

/** What an agent reports when an attempt ends, beyond the outcome itself. */
export interface FinishReport {
  outcome: AttemptOutcome;
  /** Last log lines, for failed_experiments.csv. */
  logTail?: string;
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
  private readonly warn: (message: string) => void;
  private readonly wake = new EventEmitter();
  private flushing: Promise<void> | null = null;
  private flushAgain = false;

  constructor(
    readonly db: Db,
    private readonly options: CoordinatorOptions,
  ) {
    this.leaseMs = options.leaseMs ?? 12_000;
    this.now = options.now ?? Date.now;
    this.warn = options.warn ?? ((message) => process.stderr.write(`${message}\n`));
    this.wake.setMaxListeners(0);
    options.wakeBus?.subscribe(() => this.wake.emit("work"));
  }

  /** A task that fits, with a fresh attempt, or null if nothing fits right now. */
  async lease(request: LeaseRequest): Promise<Claim | null> {
    return (await this.leaseMany(request, 1))[0] ?? null;
  }

  /**
   * Up to `max` tasks that fit together: each is matched against the capacity the previous ones
   * left. Empty if nothing fits right now.
   */
  async leaseMany(request: LeaseRequest, max: number): Promise<Claim[]> {
    if (max < 1) return [];
    // One transaction for the batch: its claims share index pages, so one commit writes them once.
    return this.db.transaction(async (tx) => {
      const claims: Claim[] = [];
      let capacity = request.capacity;
      while (claims.length < max) {
        const claim = await claimTask(tx, {
          worker: request.worker,
          host: request.host,
          now: this.now(),
          leaseMs: this.leaseMs,
          fits: (policy) => allocate(policy.resources, capacity),
        });
        if (!claim) break;
        claims.push(claim);
        capacity = consume(capacity, claim.task.policy.resources, claim.gpuIds);
      }
      return claims;
    });
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

  async finish(attemptId: number, report: FinishReport): Promise<FinishResult> {
    const [result] = await this.finishMany([{ attemptId, report }]);
    return result as FinishResult;
  }

  /**
   * Records several attempts' ends (a batch from one agent) in one transaction; gates, result
   * files and waiting agents are seen to once for the batch.
   */
  async finishMany(items: Array<{ attemptId: number; report: FinishReport }>): Promise<FinishResult[]> {
    if (items.length === 0) return [];
    // One transaction for the batch (one commit), as for leases.
    const results = await this.db.transaction(async (tx) => {
      const recorded: FinishResult[] = [];
      for (const { attemptId, report } of items)
        recorded.push(await finishAttempt(tx, attemptId, report.outcome, this.now()));
      return recorded;
    });
    try {
      for (const [i, result] of results.entries()) {
        const item = items[i] as (typeof items)[number];
        if (result.finalFailure) await this.logFailure(item.attemptId, item.report);
      }
      if (results.some((result) => result.taskState === "succeeded")) this.flushResults();
      if (results.some((result) => result.taskState === "succeeded" || result.taskState === "failed"))
        await evaluateGates(this.db, this.now());
    } finally {
      this.notifyWork();
    }
    return results;
  }

  /** Counts by state, after letting gates catch up. */
  async counts(): Promise<Counts> {
    return taskCounts(this.db);
  }

  /** True when nothing is running and nothing can be claimed now or later. */
  async isFinished(): Promise<boolean> {
    if (await evaluateGates(this.db, this.now())) this.notifyWork();
    // An index probe, not a count: idle agents ask this on every wake-up.
    const unfinished = await this.db.one<{ found: number }>(
      `SELECT EXISTS (SELECT 1 FROM tasks WHERE state IN ('pending', 'running') AND active = 1) AS found`,
    );
    return !unfinished?.found;
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
    this.notifyWork();
    return result;
  }

  /** Gives failed tasks a fresh set of retries (all, or one phase's). */
  async retryFailed(phase?: string): Promise<number> {
    const count = await retryFailed(this.db, this.now(), { phase });
    await evaluateGates(this.db, this.now());
    this.notifyWork();
    return count;
  }

  /** Tasks that could be leased right now by an agent with room for them. */
  async claimableCount(): Promise<number> {
    const row = await this.db.one<{ n: number }>(
      "SELECT count(*) AS n FROM tasks WHERE state = 'pending' AND runnable = 1 AND active = 1 AND not_before <= $1",
      [this.now()],
    );
    return row?.n ?? 0;
  }

  /** Starts writing owed result rows in the background; rows arriving meanwhile are batched. */
  flushResults(): Promise<void> {
    if (this.flushing) {
      this.flushAgain = true;
      return this.flushing;
    }
    this.flushing = (async () => {
      // Let rows gather for a moment: one append and one fsync per batch, not per task.
      await new Promise((resolve) => setTimeout(resolve, RESULTS_BATCH_MS));
      do {
        this.flushAgain = false;
        try {
          // Another replica holding the writer's duty may have missed rows committed just now:
          // look again shortly rather than leave them for the next finish.
          if ((await writeOwedResultsOnce(this.db)) === null) {
            await new Promise((resolve) => setTimeout(resolve, RESULTS_BATCH_MS));
            this.flushAgain = (await owedRowCount(this.db)) > 0;
          }
        } catch (error) {
          // The rows stay owed in the ledger and are retried on the next flush and at the next start.
          this.warn(`labsweep: could not write results: ${describe(error)}`);
          return;
        }
      } while (this.flushAgain);
    })().finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  /** Waits for result files to catch up with the ledger. */
  async drainResults(): Promise<void> {
    while (this.flushing) await this.flushing;
    await this.flushResults();
  }

  private async logFailure(attemptId: number, report: FinishReport): Promise<void> {
    const row = await this.db.one<{
      task_id: number;
      number: number;
      params_json: string;
      phases: string;
    }>(
      `SELECT a.task_id, a.number, t.params_json,
              (SELECT group_concat(DISTINCT p.phase) FROM placements p WHERE p.task_id = t.id AND p.active = 1) AS phases
         FROM attempts a JOIN tasks t ON t.id = a.task_id WHERE a.id = $1`,
      [attemptId],
    );
    if (!row) return;
    const outcome = report.outcome;
    await logFailedTask(this.options.stateDir, {
      at: new Date(this.now()),
      taskId: row.task_id,
      phases: (row.phases ?? "").split(",").filter(Boolean),
      params: JSON.parse(row.params_json),
      attempt: row.number,
      exitCode: ("exitCode" in outcome ? outcome.exitCode : null) ?? null,
      signal: ("signal" in outcome ? outcome.signal : null) ?? null,
      error: "error" in outcome ? outcome.error : "",
      logTail: report.logTail ?? "",
    });
  }
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  return error.cause ? `${error.message}: ${describe(error.cause)}` : error.message;
}
