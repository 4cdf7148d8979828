import { existsSync } from "node:fs";
import { mkdir, readdir, rename, rm } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { copyTree, isWithin } from "../files/copyTree.js";
import { readGitState, trackedFiles } from "../git/gitState.js";
import type { Db } from "../ledger/db.js";
import {
  currentSnapshots,
  keptSnapshotDirs,
  markSnapshotRemoved,
  recordSnapshot,
  removableSnapshots,
  retireSnapshots,
} from "../ledger/snapshots.js";
import type { GitState } from "../protocol/interfaces.js";
import { outputDirsOf } from "../sweep/expand.js";
import type { Sweep } from "../sweep/loadSweep.js";

/**
 * Snapshots (`snapshot: true`): each such config's dir is copied into
 * `<state>/snapshots/<n>/` when its sweep is created, and its tasks run from the copy (their
 * leases' cwd, ledger/rows.ts toTask), so editing the code during a long sweep does not change
 * tasks that have not started. In a git repository the copy holds what git would commit (tracked
 * files and untracked ones not ignored); elsewhere the whole dir. Either way without the sweep's
 * output dirs and the state dir. The copy keeps the git state it was taken at as its tasks'
 * provenance. Output dirs and results still resolve against the config's own dir.
 */

/** What prepareSnapshots did, for `run` to tell. */
export interface SnapshotReport {
  taken: Array<{ configFile: string; dir: string; files: number; git: GitState | null }>;
  /** Copies kept from an earlier start. */
  kept: number;
}

/**
 * Brings the sweep's snapshots up to date at a start: a config with `snapshot: true` and no copy
 * yet (or `refresh`: --refresh-snapshot, or its copy gone) gets one; one without the key stops
 * using its copy. Copies replaced earlier are deleted once no attempt runs from them, and half
 * made ones (a start killed mid-copy) go.
 */
export async function prepareSnapshots(
  db: Db,
  sweep: Sweep,
  stateDir: string,
  options: { refresh?: boolean; now?: number } = {},
): Promise<SnapshotReport> {
  const now = options.now ?? Date.now();
  const wanted = new Set(sweep.snapshots ?? []);
  await retireSnapshots(
    db,
    sweep.files.filter((file) => !wanted.has(file)),
  );
  const root = snapshotRoot(stateDir);
  const current = await currentSnapshots(db);
  const report: SnapshotReport = { taken: [], kept: 0 };
  for (const configFile of wanted) {
    const existing = current.get(configFile);
    if (existing && !options.refresh && existsSync(existing.dir)) {
      report.kept++;
      continue;
    }
    const skip = excludedDirs(sweep, configFile, stateDir);
    const taken = await takeSnapshot(root, dirname(configFile), skip);
    await recordSnapshot(db, { configFile, dir: taken.dir, git: taken.git, now });
    report.taken.push({ configFile, ...taken });
  }
  await removeUnused(db, root, now);
  return report;
}

/** Where a state dir keeps its snapshots. */
export function snapshotRoot(stateDir: string): string {
  return join(resolve(stateDir), "snapshots");
}

/** What a copy of `configFile`'s dir leaves out: every output dir of the sweep, and the state dir. */
function excludedDirs(sweep: Sweep, configFile: string, stateDir: string): string[] {
  const dirs = new Set<string>([resolve(stateDir)]);
  for (const phase of sweep.phases)
    if (phase.file === configFile) for (const dir of outputDirsOf(phase)) dirs.add(dir);
  return [...dirs];
}

/**
 * Copies `source` into the next `<root>/<n>/`: into a temporary dir first, renamed into place
 * once whole, so a copy the ledger names is never half made. The git state is read first: the
 * copy holds that commit's files and any edits made up to the copy.
 */
async function takeSnapshot(
  root: string,
  source: string,
  skipDirs: readonly string[],
): Promise<{ dir: string; files: number; git: GitState | null }> {
  await mkdir(root, { recursive: true, mode: 0o700 });
  const git = await readGitState(source);
  const listed = git ? await trackedFiles(source) : null;
  const paths = listed ?? (await readdir(source));
  const dir = join(root, String(await nextNumber(root)));
  const temporary = join(root, `.partial-${process.pid}-${Date.now()}`);
  await mkdir(temporary, { mode: 0o700 });
  try {
    // `.git` too: a repository git could not read (git absent) is copied as a plain dir.
    const skip = (path: string) =>
      basename(path) === ".git" ||
      isWithin(path, root) ||
      skipDirs.some((excluded) => isWithin(path, excluded));
    const files = await copyTree(source, temporary, paths, skip);
    await rename(temporary, dir);
    return { dir, files, git };
  } catch (error) {
    await rm(temporary, { recursive: true, force: true });
    throw new Error(`could not take a snapshot of ${source}: ${(error as Error).message}`, { cause: error });
  }
}

/** One more than the highest numbered copy in `root`. */
async function nextNumber(root: string): Promise<number> {
  const numbers = (await readdir(root)).filter((name) => /^\d+$/.test(name)).map(Number);
  return Math.max(0, ...numbers) + 1;
}

/** Deletes replaced copies no attempt runs from, and dirs under `root` the ledger does not name. */
async function removeUnused(db: Db, root: string, now: number): Promise<void> {
  for (const unused of await removableSnapshots(db)) {
    // Only what lies under this state dir's root: another replica's copies are its own to delete.
    if (isWithin(unused.dir, root)) await rm(unused.dir, { recursive: true, force: true });
    await markSnapshotRemoved(db, unused.id, now);
  }
  if (!existsSync(root)) return;
  const kept = new Set(await keptSnapshotDirs(db));
  for (const name of await readdir(root)) {
    const dir = join(root, name);
    // A partial copy of a start killed mid-copy, or a copy made by one killed before recording it.
    if (!kept.has(dir)) await rm(dir, { recursive: true, force: true });
  }
}
