import { accessSync, closeSync, constants, openSync, readSync } from "node:fs";
import { delimiter, join } from "node:path";

/** Every executable of this name on PATH, in the order the shell would try them. */
function everyOnPath(name: string, path: string): string[] {
  const found: string[] = [];
  for (const dir of path.split(delimiter)) {
    if (dir === "") continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      found.push(join(dir, name));
    } catch {
      // Not in this dir: the next one.
    }
  }
  return found;
}

/**
 * Whether an executable of this name is on PATH, found as the shell would find it. A lookup,
 * not a run: starting `python3` to ask cost every `run` and `agent` 50–300 ms at start-up.
 */
export function onPath(name: string, path = process.env.PATH ?? ""): boolean {
  return everyOnPath(name, path).length > 0;
}

/**
 * The python3 to run labsweep's launcher with: the first on PATH that is a program rather than a
 * script, else the first. Version managers put shims first (pyenv's and asdf's are bash scripts
 * that cost 0.2–0.6 s a start); the launcher needs only the standard library, so any real
 * python3 serves. Tasks still get the user's PATH and its python3. Null: none on PATH.
 */
export function launcherPython(path = process.env.PATH ?? ""): string | null {
  const found = everyOnPath("python3", path);
  return found.find((file) => !isScript(file)) ?? found[0] ?? null;
}

/** Whether the file starts with `#!`: an interpreter's script, not a program of its own. */
function isScript(file: string): boolean {
  let fd: number | null = null;
  try {
    fd = openSync(file, "r");
    const head = Buffer.alloc(2);
    return readSync(fd, head, 0, 2, 0) === 2 && head.toString("latin1") === "#!";
  } catch {
    return true;
  } finally {
    if (fd !== null) closeSync(fd);
  }
}
