import type { Db } from "../ledger/db.js";
import {
  computeOverview,
  ledgerVersion,
  type Overview,
  type OverviewSources,
  placementsAreSimple,
  syncedSince,
} from "../ledger/reads/overview.js";

export interface LiveOverviewOptions extends OverviewSources {
  /** How often the ledger's version is checked while someone watches. (Default: 750 ms) */
  pollMs?: number;
  /**
   * An overview costing C ms (50 ms or more) is recomputed at most every `throttle` × C ms, so a huge ledger
   * never spends more than 1/throttle of the coordinator's time on dashboards. (Default: 8)
   */
  throttle?: number;
  /** Recomputed at least this often while watched, so the rate and ETA move. (Default: 10 s) */
  refreshMs?: number;
  /** Background failures. (Default: ignored) */
  warn?: (message: string) => void;
}

/**
 * The overview, kept fresh cheaply: the ledger's newest event id tells whether anything
 * changed (an O(1) read), a change triggers a recompute (throttled by its cost), and watchers
 * get every new overview pushed. Nothing polls while nobody watches.
 */
export class LiveOverview {
  private latest: Overview | null = null;
  private computing: Promise<Overview> | null = null;
  private simple: { value: boolean; checkedThrough: number } | null = null;
  private readonly listeners = new Set<(overview: Overview) => void>();
  private timer: NodeJS.Timeout | null = null;
  private ticking = false;
  private closed = false;

  constructor(
    private readonly db: Db,
    private readonly options: LiveOverviewOptions,
  ) {}

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  /**
   * The freshest overview: the cached one while the ledger has not changed, or while a new one
   * would come sooner than its cost allows (a large ledger's counts lag by at most 8 × their cost).
   */
  async current(): Promise<Overview> {
    // One computing now may have started before writes this caller already saw: let it land,
    // then judge it by its version like any other (it records the version it started from).
    if (this.computing) await this.computing.catch(() => undefined);
    if (!this.latest) return this.refresh();
    if (this.tooSoon(0)) return this.latest;
    if ((await ledgerVersion(this.db)) === this.latest.version) return this.latest;
    return this.refresh();
  }

  /**
   * The cached overview without waiting for a costly recompute: fresh when the ledger has not
   * changed since (or recomputing costs under `cheapMs`), else the last one, marked stale.
   */
  async peek(cheapMs = 100): Promise<{ overview: Overview; fresh: boolean }> {
    if (!this.latest) return { overview: await this.refresh(), fresh: true };
    if ((await ledgerVersion(this.db)) === this.latest.version) return { overview: this.latest, fresh: true };
    if (this.latest.costMs < cheapMs) return { overview: await this.refresh(), fresh: true };
    return { overview: this.latest, fresh: false };
  }

  /** Computes a fresh overview (one computation at a time) and tells the watchers. */
  refresh(): Promise<Overview> {
    if (this.computing) return this.computing;
    if (this.closed) return Promise.reject(new Error("the dashboard is closed"));
    this.computing = (async () => {
      try {
        const overview = await computeOverview(this.db, this.options, await this.placementsSimple());
        this.latest = overview;
        for (const listener of this.listeners) listener(overview);
        return overview;
      } finally {
        this.computing = null;
      }
    })();
    return this.computing;
  }

  /** Gets `listener` called with every new overview; returns the unsubscribe function. */
  subscribe(listener: (overview: Overview) => void): () => void {
    this.listeners.add(listener);
    if (!this.timer && !this.closed) {
      this.timer = setInterval(() => void this.tick(), this.options.pollMs ?? 750);
      this.timer.unref();
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stopTimer();
    };
  }

  /** Stops polling and forgets the watchers; pending work finishes. */
  async close(): Promise<void> {
    this.closed = true;
    this.listeners.clear();
    this.stopTimer();
    await this.computing?.catch(() => undefined);
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private refreshMs(): number {
    return this.options.refreshMs ?? 10_000;
  }

  /** Whether the latest overview is younger than `minGapMs` or its cost allows a new one. */
  private tooSoon(minGapMs = this.options.pollMs ?? 750): boolean {
    if (!this.latest) return false;
    // Only a costly overview (a large ledger) is throttled; a cheap one is always fresh.
    const costly = this.latest.costMs >= 50;
    const gap = Math.max(minGapMs, costly ? (this.options.throttle ?? 8) * this.latest.costMs : 0);
    return this.now() - this.latest.at < gap;
  }

  private async tick(): Promise<void> {
    if (this.ticking || this.closed || this.tooSoon()) return;
    this.ticking = true;
    try {
      const version = await ledgerVersion(this.db);
      const stale =
        !this.latest || this.latest.version !== version || this.now() - this.latest.at >= this.refreshMs();
      if (stale && !this.closed) await this.refresh();
    } catch (error) {
      this.options.warn?.(
        `dashboard: overview failed: ${error instanceof Error ? error.message : String(error)}`,
      );
    } finally {
      this.ticking = false;
    }
  }

  /** placementsAreSimple, re-checked only after a config sync (a `sweep_synced` event). */
  private async placementsSimple(): Promise<boolean> {
    const version = await ledgerVersion(this.db);
    if (this.simple) {
      if (!(await syncedSince(this.db, this.simple.checkedThrough))) {
        this.simple.checkedThrough = version;
        return this.simple.value;
      }
    }
    this.simple = { value: await placementsAreSimple(this.db), checkedThrough: version };
    return this.simple.value;
  }
}
