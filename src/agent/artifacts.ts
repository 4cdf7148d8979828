import { lstat, realpath } from "node:fs/promises";
import { sep } from "node:path";
import { glob } from "tinyglobby";
import { sha256File } from "../files/sha256File.js";
import {
  type ArtifactFile,
  artifactPathError,
  type CollectedArtifacts,
  MAX_ARTIFACT_FILES,
} from "../protocol/artifacts.js";
import type { AttemptOutcome, GitState, Lease } from "../protocol/interfaces.js";
import { DEFAULT_ARTIFACT_LIMIT_MB, type RunPolicy } from "../sweep/types.js";
import type { CoordinatorPort } from "./coordinatorPort.js";
import { formatBytes } from "./taskFiles.js";

/**
 * The files in `workDir` that `policy.artifacts` match, hashed: regular files only, never
 * through a symlink (a link the task left could point anywhere on the agent's machine). Null
 * when the phase collects nothing. An error (a bad path, more than `artifact_limit_mb` together)
 * fails the attempt, saying so, like a result over its limit.
 */
export async function collectArtifacts(
  workDir: string,
  policy: Pick<RunPolicy, "artifacts" | "artifactLimitMb">,
): Promise<CollectedArtifacts | { error: string } | null> {
  const globs = policy.artifacts ?? [];
  if (globs.length === 0) return null;
  const limitMb = policy.artifactLimitMb ?? DEFAULT_ARTIFACT_LIMIT_MB;
  const limit = Math.floor(limitMb * 1024 * 1024);
  const root = await realpath(workDir);
  const matched = await glob(globs, {
    cwd: root,
    onlyFiles: true,
    followSymbolicLinks: false,
    expandDirectories: false,
  });
  const files: ArtifactFile[] = [];
  let total = 0;
  for (const path of [...new Set(matched)].sort()) {
    const full = `${root}${sep}${path}`;
    const stat = await lstat(full);
    // A symlink, or a path through one, is never collected.
    if (!stat.isFile() || (await realpath(full)) !== full) continue;
    const bad = artifactPathError(path);
    if (bad) return { error: `artifact ${JSON.stringify(path)} ${bad}` };
    if (files.length === MAX_ARTIFACT_FILES)
      return {
        error: `more than ${MAX_ARTIFACT_FILES} artifacts match its artifacts: globs: collect fewer files (an archive of a dir counts as one)`,
      };
    total += stat.size;
    if (total > limit)
      return {
        error: `artifacts are over ${formatBytes(limit)} (artifact_limit_mb: ${limitMb}): raise it, or collect fewer files`,
      };
    files.push({ path, size: stat.size, sha256: "" });
  }
  for (const file of files) file.sha256 = await sha256File(`${root}${sep}${file.path}`);
  return { dir: root, files };
}

/** How an attempt ended, as the port takes it. */
export interface AttemptEnd {
  outcome: AttemptOutcome;
  logTail?: string;
  artifacts?: CollectedArtifacts;
}

/**
 * Reports an attempt's end through the port with its artifacts, collected from its work dir
 * when it succeeded — a success whose artifacts cannot be collected (over the limit, unreadable)
 * is reported as a failure saying why. Once `finish` resolved the files are the port's (in the
 * outbox, or stored), and the caller may empty the work dir. The outcome carries the provenance
 * `git` read as the attempt started, if any. Returns the outcome reported.
 */
export async function reportWithArtifacts(
  port: Pick<CoordinatorPort, "finish">,
  lease: Lease,
  end: AttemptEnd,
  workDir: string,
  git: Promise<GitState | null> = Promise.resolve(null),
): Promise<AttemptOutcome> {
  let { outcome } = end;
  let artifacts: CollectedArtifacts | undefined;
  // Only a phase with artifacts awaits anything before `finish`: the usual report leaves at once.
  if (outcome.kind === "succeeded" && (lease.task.policy.artifacts?.length ?? 0) > 0) {
    const collected = await collectArtifacts(workDir, lease.task.policy).catch((error: unknown) => ({
      error: `could not collect its artifacts: ${error instanceof Error ? error.message : String(error)}`,
    }));
    if (collected && "error" in collected)
      outcome = {
        kind: "failed",
        exitCode: 0,
        signal: null,
        error: collected.error,
        wallSeconds: outcome.wallSeconds,
      };
    else if (collected) artifacts = collected;
  }
  const state = await git;
  if (state) outcome = { ...outcome, git: state };
  await port.finish(lease.attemptId, { ...end, outcome, ...(artifacts && { artifacts }) });
  return outcome;
}
