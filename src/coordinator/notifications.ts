import { createHash, randomUUID } from "node:crypto";
import type { Db } from "../ledger/db.js";
import { enqueueNotifications, type NotificationRow } from "../ledger/enqueueNotifications.js";
import {
  claimNotifications,
  giveUpNotification,
  markNotificationSent,
  type OwedNotification,
  owedNotifications,
  releaseNotificationClaims,
  retryNotificationAt,
} from "../ledger/notificationOutbox.js";
import { describe, type Logger, logger, type Warn } from "../log/logger.js";
import { describeEntry } from "../sweep/notifySetting.js";
import type { NotifyEntry } from "../sweep/types.js";
import { type DeliveryLimits, deliver, type NotifyBody } from "./notifyDelivery.js";
import {
  agentLost,
  type Happening,
  levelHappenings,
  type SweepIdentity,
  taskFailed,
} from "./notifyEvents.js";

export interface NotificationsOptions {
  sweep: SweepIdentity;
  /** Where give-ups and failed checks are said. (Default: stderr) */
  warn?: Warn;
  /** Injectable clock for tests. (Default: Date.now) */
  now?: () => number;
  /**
   * This process is its ledger's only coordinator (SQLite, under the state dir's lock): claims
   * found at start are a dead process's, retried at once. Replicas on PostgreSQL wait out the
   * claim instead. (Default: false)
   */
  sole?: boolean;
  /** First retry delay; doubled per try up to maxBackoffMs. (Default: 1 s) */
  backoffMs?: number;
  /** (Default: 5 min) */
  maxBackoffMs?: number;
  /** Deliveries of one notification before it is given up, with a warning. (Default: 10) */
  maxTries?: number;
  /** How often the outbox is looked at for what is due (another replica's rows, retries). (Default: 1 s) */
  pollMs?: number;
  /** The least time between two checks for finished phases and the sweep. (Default: 1 s) */
  checkEveryMs?: number;
  limits?: DeliveryLimits;
}

/** Notifications a sender claims at once; they are delivered side by side. */
const BATCH = 8;
/** Beyond the longest delivery: a claim outlives its send, so no replica takes it meanwhile. */
const CLAIM_MARGIN_MS = 15_000;

/**
 * The key of a `notify:` entry in the ledger: a hash of what it fires on and where it sends, so
 * a restart (or a replica) with the same entry owns the same rows, and no URL is stored.
 */
export function targetKey(entry: NotifyEntry): string {
  const what = [entry.on, entry.threshold ?? null, entry.webhook ?? null, entry.command ?? null];
  if (entry.minFinished !== undefined) what.push(entry.minFinished);
  return createHash("sha256").update(JSON.stringify(what)).digest("hex").slice(0, 16);
}

/**
 * The sweep's notifications: records them in the ledger's outbox (in the transaction of what
 * they tell of, or from a check of the sweep's state) and sends them in the background, retried
 * with exponential backoff, each marked sent once delivered. Nothing here blocks or fails the
 * coordinator: a delivery has a time limit and its failures end as warnings.
 */
export class Notifications {
  private readonly targets = new Map<string, NotifyEntry>();
  private readonly now: () => number;
  private readonly log: Logger;
  private readonly abort = new AbortController();
  private poll: NodeJS.Timeout | null = null;
  private checkTimer: NodeJS.Timeout | null = null;
  private lastCheck = 0;
  private pumping: Promise<void> | null = null;
  private pumpAgain = false;
  private stopped = false;

  constructor(
    private readonly db: Db,
    entries: readonly NotifyEntry[],
    private readonly options: NotificationsOptions,
  ) {
    for (const entry of entries) this.targets.set(targetKey(entry), entry);
    this.now = options.now ?? Date.now;
    this.log = logger("labsweep", options.warn);
  }

  /** Whether any entry wants `event`. */
  wants(event: NotifyEntry["on"]): boolean {
    for (const entry of this.targets.values()) if (entry.on === event) return true;
    return false;
  }

  /** Picks up what a previous process left owed, checks the sweep's state, and starts sending. */
  async start(): Promise<void> {
    if (this.targets.size === 0) return;
    if (this.options.sole) await releaseNotificationClaims(this.db, this.now());
    await this.checkStates();
    this.poll = setInterval(() => void this.pump(), this.options.pollMs ?? 1000);
    this.poll.unref();
    void this.pump();
  }

  /**
   * In the transaction that records final failures: one notification per failure for each
   * entry on task_failed. `failures`: the attempt, why it failed, its exit code.
   */
  async recordFinalFailures(
    tx: Db,
    failures: ReadonlyArray<{ attemptId: number; error: string; exitCode: number | null }>,
    now: number,
  ): Promise<void> {
    if (failures.length === 0 || !this.wants("task_failed")) return;
    for (const failure of failures) {
      const happening = await taskFailed(
        tx,
        this.options.sweep,
        failure.attemptId,
        failure.error,
        failure.exitCode,
      );
      if (happening) await this.record(tx, happening, now);
    }
  }

  /** In the transaction that marks an agent lost. */
  async recordAgentLost(tx: Db, agent: { id: string; host?: string | null }, reason: string, now: number) {
    if (!this.wants("agent_lost")) return;
    await this.record(tx, agentLost(this.options.sweep, agent, reason, now), now);
  }

  /**
   * Tasks settled (after the commit): a failure recorded may be sent now; a phase or the sweep may
   * have finished, the failure rate risen.
   */
  tasksSettled(): void {
    this.poke();
    if (this.stopped || this.checkTimer !== null || !this.wantsStates()) return;
    const wait = Math.max(0, this.lastCheck + (this.options.checkEveryMs ?? 1000) - performance.now());
    this.checkTimer = setTimeout(() => {
      this.checkTimer = null;
      void this.checkStates().catch((error) =>
        this.log.warn(`could not check for notifications: ${describe(error)}`),
      );
    }, wait);
    this.checkTimer.unref();
  }

  /** Something was recorded: send it now rather than at the next poll. */
  poke(): void {
    if (this.targets.size > 0 && !this.stopped) void this.pump();
  }

  /**
   * Stops, after a last check of the sweep's state and up to `boundMs` of sending what is owed
   * (a failing endpoint is retried while time is left). What is still owed stays in the outbox
   * for the next start; a delivery still going is abandoned (and so sent again then).
   */
  async stop(boundMs: number): Promise<void> {
    if (this.targets.size === 0 || this.stopped) return;
    if (this.checkTimer !== null) clearTimeout(this.checkTimer);
    this.checkTimer = null;
    if (this.poll !== null) clearInterval(this.poll);
    const deadline = this.now() + boundMs;
    try {
      await this.checkStates();
      for (;;) {
        await withDeadline(this.pump(), deadline - this.now());
        const { owed, nextTry } = await owedNotifications(this.db, [...this.targets.keys()]);
        if (owed === 0 || nextTry === null || nextTry >= deadline || this.now() >= deadline) break;
        await sleep(Math.max(10, nextTry - this.now()));
      }
    } catch (error) {
      this.log.warn(`could not send notifications before stopping: ${describe(error)}`);
    } finally {
      this.stopped = true;
      this.abort.abort();
      await withDeadline(this.pumping ?? Promise.resolve(), 1000);
    }
  }

  private wantsStates(): boolean {
    return this.wants("phase_finished") || this.wants("sweep_finished") || this.wants("failure_rate");
  }

  /** Records the notifications the sweep's state calls for now (each once: see notifyEvents.ts). */
  private async checkStates(): Promise<void> {
    if (!this.wantsStates()) return;
    this.lastCheck = performance.now();
    const thresholds = [...this.targets.values()].flatMap((entry) =>
      entry.on === "failure_rate" && entry.threshold !== undefined
        ? [{ threshold: entry.threshold, minFinished: entry.minFinished ?? 1 }]
        : [],
    );
    const happenings = await levelHappenings(this.db, this.options.sweep, {
      phases: this.wants("phase_finished"),
      sweep: this.wants("sweep_finished"),
      thresholds,
    });
    if (happenings.length === 0) return;
    const now = this.now();
    const added = await this.db.transaction(async (tx) => {
      let count = 0;
      for (const happening of happenings) count += await this.record(tx, happening, now);
      return count;
    });
    if (added > 0) this.poke();
  }

  /** One outbox row per entry that wants the happening (failure_rate: per threshold crossed). */
  private async record(tx: Db, happening: Happening, now: number): Promise<number> {
    const rows: NotificationRow[] = [];
    for (const [target, entry] of this.targets) {
      if (entry.on !== happening.event) continue;
      const { threshold, min_finished } = happening.fields;
      if (
        entry.on === "failure_rate" &&
        (threshold !== entry.threshold || min_finished !== entry.minFinished)
      )
        continue;
      const payload = { ...happening.fields, time: new Date(now).toISOString(), text: happening.text };
      rows.push({
        target,
        about: happening.about,
        event: happening.event,
        payload: JSON.stringify(payload),
        uid: randomUUID(),
      });
    }
    return enqueueNotifications(tx, rows, now);
  }

  /** Sends what is due, a batch at a time, until nothing is; one pump at a time. */
  private pump(): Promise<void> {
    if (this.pumping) {
      this.pumpAgain = true;
      return this.pumping;
    }
    this.pumping = (async () => {
      do {
        this.pumpAgain = false;
        for (;;) {
          if (this.abort.signal.aborted) return;
          const now = this.now();
          const claimMs = Math.max(
            this.options.limits?.webhookTimeoutMs ?? 10_000,
            this.options.limits?.commandTimeoutMs ?? 30_000,
          );
          const rows = await claimNotifications(
            this.db,
            [...this.targets.keys()],
            now,
            now + claimMs + CLAIM_MARGIN_MS,
            BATCH,
          );
          if (rows.length === 0) break;
          await Promise.all(rows.map((row) => this.send(row)));
        }
      } while (this.pumpAgain);
    })()
      .catch((error) => {
        if (!this.stopped) this.log.warn(`could not send notifications: ${describe(error)}`);
      })
      .finally(() => {
        this.pumping = null;
      });
    return this.pumping;
  }

  private async send(row: OwedNotification): Promise<void> {
    const entry = this.targets.get(row.target) as NotifyEntry;
    const fields = JSON.parse(row.payload) as Record<string, unknown> & { text: string };
    const body: NotifyBody = {
      id: row.uid,
      event: row.event,
      ...fields,
      content: fields.text.slice(0, 1900),
    };
    const result = await deliver(entry, body, { ...this.options.limits, signal: this.abort.signal });
    if (this.abort.signal.aborted) return; // stopping: the row stays claimed, and owed
    const now = this.now();
    if (result.ok) return markNotificationSent(this.db, row.id, now);
    const maxTries = this.options.maxTries ?? 10;
    if (result.permanent || row.tries >= maxTries) {
      this.log.warn(
        `${describeEntry(entry)}: gave up on ${row.event} notification ${row.uid} after ${row.tries} tr${row.tries === 1 ? "y" : "ies"}: ${result.error}`,
      );
      return giveUpNotification(this.db, row.id, result.error);
    }
    const backoff = Math.min(
      this.options.maxBackoffMs ?? 5 * 60_000,
      (this.options.backoffMs ?? 1000) * 2 ** (row.tries - 1),
    );
    // Said once, on the first failure; the give-up says the rest.
    if (row.tries === 1)
      this.log.warn(
        `${describeEntry(entry)}: ${row.event} notification not delivered (${result.error}); retrying`,
      );
    await retryNotificationAt(this.db, row.id, now + backoff, result.error);
    setTimeout(() => void this.pump(), backoff + 5).unref();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits for `work`, or `ms` at most (it goes on regardless). */
async function withDeadline(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([work, new Promise((resolve) => (timer = setTimeout(resolve, Math.max(0, ms))))]);
  clearTimeout(timer);
}
