import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { isAbsolute, join, resolve } from "node:path";
import type { GitState } from "../protocol/interfaces.js";

/**
 * Reading git: the state of a dir's repository (provenance) and the files it holds (snapshots).
 * Every failure — git not installed, the dir not in a repository, a repository without a commit,
 * one git refuses (another user's) — reads as "no git": provenance is a note on a result, never a
 * reason to fail a task or a sweep.
 */

/** What git reports of a dir's repository: its state, and the files whose change may change it. */
export interface RepoReading {
  state: GitState;
  /**
   * HEAD, the index, packed-refs and the ref HEAD points to: a commit, a checkout, a `git add`
   * or a reset changes one of them (their stat is how a cache notices).
   */
  watched: string[];
}

/**
 * The git state of `dir`'s repository now; null when there is none. Two git processes: one for
 * HEAD and where the repository lives, one for the diff (streamed into its hash, so a large
 * binary diff costs no memory).
 */
export async function readRepo(dir: string): Promise<RepoReading | null> {
  // One process for where the repository lives, HEAD's commit and the ref it names ("HEAD" when
  // detached); it fails in a dir outside a repository and in one without a commit.
  const head = await gitText(dir, [
    "rev-parse",
    "--absolute-git-dir",
    "--git-common-dir",
    "HEAD",
    "--symbolic-full-name",
    "HEAD",
  ]);
  if (head === null) return null;
  const [gitDir, commonDir, commit, ref] = head.split("\n");
  if (!gitDir || !commonDir || !commit || !/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(commit)) return null;
  const common = isAbsolute(commonDir) ? commonDir : resolve(dir, commonDir);
  // `--binary`: a changed binary file changes the hash, not just "Binary files differ".
  const diff = await gitHash(dir, [
    "diff",
    "HEAD",
    "--binary",
    "--no-ext-diff",
    "--no-textconv",
    "--no-color",
  ]);
  if (diff === null) return null;
  const watched = [join(gitDir, "HEAD"), join(gitDir, "index"), join(common, "packed-refs")];
  if (ref?.startsWith("refs/")) watched.push(join(common, ref));
  const dirty = diff.bytes > 0;
  return { state: { commit, dirty, diffSha256: dirty ? diff.sha256 : null }, watched };
}

/** `readRepo`'s state alone. */
export async function readGitState(dir: string): Promise<GitState | null> {
  return (await readRepo(dir))?.state ?? null;
}

/**
 * The files of `dir` git would put in a commit: tracked ones and untracked ones not ignored
 * (`git ls-files -co --exclude-standard`), relative to `dir`; null when `dir` is not in a repository.
 * Tracked files deleted from the work tree are listed too: the caller skips what is not there.
 */
export async function trackedFiles(dir: string): Promise<string[] | null> {
  const listed = await gitOutput(dir, ["ls-files", "-co", "--exclude-standard", "-z"]);
  if (listed === null) return null;
  return [
    ...new Set(
      listed
        .toString("utf8")
        .split("\0")
        .filter((path) => path.length > 0),
    ),
  ];
}

/**
 * git's environment: no optional locks, so reading a status never rewrites the index (whose
 * change a cache would take for a new state), and messages in one language.
 */
function gitEnv(): NodeJS.ProcessEnv {
  return { ...process.env, GIT_OPTIONAL_LOCKS: "0", LC_ALL: "C", GIT_TERMINAL_PROMPT: "0" };
}

async function gitText(dir: string, args: string[]): Promise<string | null> {
  const output = await gitOutput(dir, args);
  return output === null ? null : output.toString("utf8").trim();
}

/** git's standard output, or null when it cannot run or exits non-zero. */
function gitOutput(dir: string, args: string[]): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  return runGit(dir, args, (chunk) => chunks.push(chunk)).then((ok) => (ok ? Buffer.concat(chunks) : null));
}

/** SHA-256 and length of git's standard output, or null when it cannot run or exits non-zero. */
async function gitHash(dir: string, args: string[]): Promise<{ sha256: string; bytes: number } | null> {
  const hash = createHash("sha256");
  let bytes = 0;
  const ok = await runGit(dir, args, (chunk) => {
    hash.update(chunk);
    bytes += chunk.length;
  });
  return ok ? { sha256: hash.digest("hex"), bytes } : null;
}

/** Runs git in `dir`, handing its output to `onData`; true when it exited 0. */
function runGit(dir: string, args: string[], onData: (chunk: Buffer) => void): Promise<boolean> {
  return new Promise((resolveRun) => {
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn("git", args, { cwd: dir, env: gitEnv(), stdio: ["ignore", "pipe", "ignore"] });
    } catch {
      // A cwd that is gone, or no way to spawn at all: no git here.
      resolveRun(false);
      return;
    }
    child.stdout?.on("data", onData);
    // ENOENT (git not installed), a cwd that vanished: no git here.
    child.on("error", () => resolveRun(false));
    child.on("close", (code) => resolveRun(code === 0));
  });
}
