import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { rm } from "node:fs/promises";
import { basename, join } from "node:path";
import { PRIVATE_DIR_MODE } from "../files/privateFiles.js";

/**
 * The attempts' work dirs (LABSWEEP_WORK_DIR), kept in a pool under `<state dir>/work/` and
 * handed out empty: each attempt has one of its own while it runs, and its artifacts are
 * collected from it alone, so files of two attempts never mix. Why a pool rather than a dir made
 * and removed per attempt: those are two inode allocations per task, the largest part of a
 * no-op task's cost on these machines (ext4 without a journal steps past every inode deleted in
 * the last 30 s to find a free one), and most tasks leave their work dir empty. Each dir has a
 * config file (LABSWEEP_CONFIG_FILE) under `configRoot`, pooled with it for the same reason:
 * rewritten for each attempt that has the dir, it costs a new inode only the first time.
 */
export class WorkDirs {
  /** Dirs made, emptied and not in use. */
  private readonly free: string[] = [];
  /** Dirs that exist (made by `prepare`), in use or free. */
  private readonly made = new Set<string>();
  private named = 0;

  /** Starts from nothing: a dir an earlier incarnation of this agent left holds no attempt's files. */
  constructor(
    private readonly root: string,
    private readonly configRoot: string = `${root}-configs`,
  ) {
    rmSync(root, { recursive: true, force: true });
    rmSync(configRoot, { recursive: true, force: true });
  }

  /** A dir for one attempt: a free one, or the name of a new one that `prepare` makes. */
  take(): string {
    const dir = this.free.pop();
    if (dir !== undefined) return dir;
    this.named += 1;
    return join(this.root, String(this.named));
  }

  /** The config file that goes with a dir `take` named: `<config root>/<its name>.json`. */
  configPath(dir: string): string {
    return join(this.configRoot, `${basename(dir)}.json`);
  }

  /**
   * Makes a dir `take` named (with the pool's roots the first time); nothing for one reused. Its
   * config file is the caller's to write, once this returned.
   */
  prepare(dir: string): void {
    if (this.made.has(dir)) return;
    try {
      mkdirSync(dir, { mode: PRIVATE_DIR_MODE });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      mkdirSync(this.root, { recursive: true, mode: PRIVATE_DIR_MODE });
      mkdirSync(this.configRoot, { recursive: true, mode: PRIVATE_DIR_MODE });
      mkdirSync(dir, { mode: PRIVATE_DIR_MODE });
    }
    this.made.add(dir);
  }

  /**
   * Takes a dir back once its attempt is reported (its artifacts moved out): emptied, it goes
   * back in the pool. One that cannot be emptied is never handed out again.
   */
  async giveBack(dir: string): Promise<void> {
    try {
      // Looked at in place: most tasks leave it empty, and one call costs less than a trip
      // through the thread pool.
      const left = readdirSync(dir);
      for (const name of left) await rm(join(dir, name), { recursive: true, force: true });
      this.free.push(dir);
    } catch {
      // A dir never made (its attempt could not start) or not emptied: a new one takes its place.
    }
  }
}
