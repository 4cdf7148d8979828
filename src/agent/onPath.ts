import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

/**
 * Whether an executable of this name is on PATH, found as the shell would find it. A lookup,
 * not a run: starting `python3` to ask cost every `run` and `agent` 50–300 ms at start-up.
 */
export function onPath(name: string, path = process.env.PATH ?? ""): boolean {
  for (const dir of path.split(delimiter)) {
    if (dir === "") continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return true;
    } catch {
      // Not in this dir: the next one.
    }
  }
  return false;
}
