import {
  chmodSync,
  closeSync,
  constants,
  ftruncateSync,
  mkdirSync,
  openSync,
  statSync,
  writeSync,
} from "node:fs";
import { rm, rmdir } from "node:fs/promises";

/**
 * Everything labsweep keeps in a state dir — the ledger, tokens, logs, outboxes, results — is its
 * owner's alone: researchers share machines, and task logs and commands can hold secrets. Modes
 * are given explicitly at creation (the umask only takes bits away, so even `umask 000` yields
 * these), and a dir that exists already is tightened.
 */
export const PRIVATE_FILE_MODE = 0o600;
export const PRIVATE_DIR_MODE = 0o700;

/** Creates `dir` (and missing parents, also 0700) and makes it 0700 if it is not already. */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  if ((statSync(dir).mode & 0o777) !== PRIVATE_DIR_MODE) chmodSync(dir, PRIVATE_DIR_MODE);
}

/**
 * Creates `path` empty with mode 0600 if it does not exist, so a program that creates files with
 * its own default mode (SQLite: 0644; a task writing its result) finds it private already; an
 * existing one is tightened by path. (Never opened when it exists: closing a descriptor of a file
 * SQLite holds open would drop SQLite's POSIX locks on it.)
 */
export function touchPrivateFile(path: string): void {
  try {
    closeSync(openSync(path, "wx", PRIVATE_FILE_MODE));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    tightenFile(path);
  }
}

/**
 * Writes `text` over a private file that is rewritten again and again (made 0600 if missing):
 * in place, then cut to its length, never emptied first. ext4 takes a file truncated to 0 for
 * the start of a replace-by-truncate and, at its close, allocates and starts writing back the
 * blocks it held (`auto_da_alloc`): `writeFileSync`'s O_TRUNC cost a pooled config file 0.7 ms a
 * rewrite on average, up to 30 ms, in the caller's thread.
 */
export function overwritePrivateFile(path: string, text: string): void {
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT, PRIVATE_FILE_MODE);
  try {
    const bytes = writeSync(fd, text, 0);
    ftruncateSync(fd, bytes);
  } finally {
    closeSync(fd);
  }
}

/** Makes an existing file 0600 if others may read it; nothing when it does not exist. One stat. */
export function tightenFile(path: string): void {
  const stat = statSync(path, { throwIfNoEntry: false });
  if (stat && stat.mode & 0o077) chmodSync(path, PRIVATE_FILE_MODE);
}

/**
 * A private dir at `dir`, its parents made too where missing; one mkdir when they exist. True
 * when the dir was made now (so it holds nothing yet), false when it was there already.
 */
export function privateDirWithParents(dir: string): boolean {
  try {
    mkdirSync(dir, { mode: PRIVATE_DIR_MODE });
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EEXIST") return false;
    if (code !== "ENOENT") throw error;
    mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    return true;
  }
}

/** Removes `dir` and what it holds; one rmdir when it is empty (the usual case), nothing if gone. */
export async function removeDir(dir: string): Promise<void> {
  try {
    await rmdir(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return;
    if (code !== "ENOTEMPTY" && code !== "EEXIST" && code !== "ENOTDIR") throw error;
    await rm(dir, { recursive: true, force: true });
  }
}
