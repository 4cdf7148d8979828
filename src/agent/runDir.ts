import { statSync } from "node:fs";
import type { Task } from "../protocol/interfaces.js";

/**
 * Where a networked agent runs a leased task, given what exists on its machine: the task's cwd
 * when it is there (the project checked out at the same path, or a shared filesystem — a
 * snapshot's copy included); else, for a snapshot task, the config's own dir it was copied from;
 * else `workdir` (--workdir). A task that leaves the snapshot runs from this machine's code, so it
 * loses the snapshot's provenance: the agent reads git where it runs instead. Null: nowhere.
 */
export function taskHere(task: Task, workdir: string | undefined): Task | null {
  if (isDirectory(task.cwd)) return task;
  const { snapshot, ...own } = task;
  if (snapshot && isDirectory(snapshot.sourceDir)) return { ...own, cwd: snapshot.sourceDir };
  return workdir === undefined ? null : { ...own, cwd: workdir };
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
