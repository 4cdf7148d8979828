import { statSync } from "node:fs";
import type { GitState } from "../protocol/interfaces.js";
import { readRepo } from "./gitState.js";

export interface GitStateCacheOptions {
  /**
   * How old a reading may be before git is asked again although none of its watched files
   * changed: how soon an edit to a tracked file shows in the provenance of attempts that start
   * after it. (Default: 1 s)
   */
  recheckMs?: number;
  /** (Default: Date.now) */
  now?: () => number;
}

interface Reading {
  state: GitState | null;
  watched: string[];
  /** The watched files' stat when git was read. */
  stamp: string;
  at: number;
}

/**
 * The git state of tasks' working dirs, read without a git process per attempt: an agent running
 * 2,000 one-millisecond tasks must not run 4,000 git processes. A reading is reused while it is
 * younger than `recheckMs` and the files git's state lives in (HEAD, the index, packed-refs, the
 * branch's ref) keep their stat — four stat calls, no process. So a commit, checkout, reset or
 * `git add` shows at once; an edit to a tracked file touches none of those files (git itself finds
 * it only by stat-ing the whole tree), and shows in attempts starting up to `recheckMs` after it.
 * A task started that close to an edit races it anyway: it may read its files before or after.
 * One reading per dir is in flight at a time; attempts starting meanwhile share it.
 */
export class GitStateCache {
  private readonly readings = new Map<string, Reading>();
  private readonly inFlight = new Map<string, Promise<GitState | null>>();
  private readonly recheckMs: number;
  private readonly now: () => number;

  constructor(options: GitStateCacheOptions = {}) {
    this.recheckMs = options.recheckMs ?? 1000;
    this.now = options.now ?? Date.now;
  }

  /** The git state of `dir`'s repository (null: none), from the cache while it holds. */
  read(dir: string): Promise<GitState | null> {
    const reading = this.readings.get(dir);
    if (reading && this.now() - reading.at < this.recheckMs && stampOf(reading.watched) === reading.stamp)
      return Promise.resolve(reading.state);
    const pending = this.inFlight.get(dir);
    if (pending) return pending;
    const started = this.now();
    const read = readRepo(dir)
      .then((repo) => {
        const watched = repo?.watched ?? [];
        // Stamped after git ran: a change during the reading may be missed until the recheck.
        this.readings.set(dir, { state: repo?.state ?? null, watched, stamp: stampOf(watched), at: started });
        return repo?.state ?? null;
      })
      .finally(() => this.inFlight.delete(dir));
    this.inFlight.set(dir, read);
    return read;
  }
}

/** The watched files' identity now: a write, a rename over, a deletion each change it. */
function stampOf(paths: readonly string[]): string {
  return paths
    .map((path) => {
      try {
        const stats = statSync(path, { bigint: true, throwIfNoEntry: false });
        return stats ? `${stats.ino}:${stats.size}:${stats.mtimeNs}` : "-";
      } catch {
        // Unreadable (EACCES): a stamp that equals no other, so git is asked each time.
        return `?${Math.random()}`;
      }
    })
    .join("|");
}
