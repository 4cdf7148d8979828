import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";

/** Runs git in `dir` with a fixed identity (tests run where no user.name is configured). */
export function git(dir: string, ...args: string[]): string {
  return execFileSync("git", args, {
    cwd: dir,
    encoding: "utf8",
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: "test",
      GIT_AUTHOR_EMAIL: "test@example.invalid",
      GIT_COMMITTER_NAME: "test",
      GIT_COMMITTER_EMAIL: "test@example.invalid",
    },
  }).trim();
}

/** Makes `dir` a repository whose one commit holds everything in it now; returns that commit. */
export function commitAll(dir: string, message = "work"): string {
  git(dir, "init", "-q");
  git(dir, "add", "-A");
  git(dir, "commit", "-q", "-m", message);
  return git(dir, "rev-parse", "HEAD");
}

/** SHA-256 of `git diff HEAD --binary`: what git_diff_sha256 must hold for the tree as it is now. */
export function diffHash(dir: string): string {
  const diff = execFileSync("git", ["diff", "HEAD", "--binary"], { cwd: dir });
  return createHash("sha256").update(diff).digest("hex");
}
