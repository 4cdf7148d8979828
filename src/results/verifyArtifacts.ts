import { stat } from "node:fs/promises";
import { join } from "node:path";
import { sha256File } from "../files/sha256File.js";
import type { Db } from "../ledger/db.js";
import { artifactPage, taskOutputDirs } from "../ledger/reads/artifacts.js";
import { artifactDir } from "../protocol/artifacts.js";

/** One stored artifact whose file does not match the ledger's record of it. */
export interface ArtifactProblem {
  taskId: number;
  /** The artifact's path, relative to the task's artifact dir. */
  path: string;
  /** The file checked: `{output_dir}/artifacts/<signature>/<path>`. */
  file: string;
  problem: "missing" | "size" | "sha256";
  /** What is wrong, in words: "size 10 bytes, the ledger says 12". */
  detail: string;
}

/** Artifact records read per query. */
const PAGE = 500;

/**
 * Checks every artifact the ledger records against its file in each of its task's output dirs:
 * present, a regular file, the recorded size and SHA-256. Returns what is wrong (empty: all
 * good); never changes anything. For `labsweep verify`.
 */
export async function verifyArtifacts(db: Db): Promise<ArtifactProblem[]> {
  const problems: ArtifactProblem[] = [];
  const dirsOf = new Map<number, string[]>();
  let after: { taskId: number; path: string } | null = null;
  for (;;) {
    const page = await artifactPage(db, after, PAGE);
    for (const row of page) {
      let dirs = dirsOf.get(row.task_id);
      if (!dirs) {
        dirsOf.clear(); // pages come in task order: one task's dirs at a time
        dirs = await taskOutputDirs(db, row.task_id);
        dirsOf.set(row.task_id, dirs);
      }
      for (const outputDir of dirs) {
        const file = join(artifactDir(outputDir, row.signature), ...row.path.split("/"));
        const problem = await checkFile(file, row.size, row.sha256);
        if (problem) problems.push({ taskId: row.task_id, path: row.path, file, ...problem });
      }
    }
    const last = page.at(-1);
    if (!last || page.length < PAGE) return problems;
    after = { taskId: last.task_id, path: last.path };
  }
}

async function checkFile(
  file: string,
  size: number,
  sha256: string,
): Promise<Pick<ArtifactProblem, "problem" | "detail"> | null> {
  let actual: number;
  try {
    const info = await stat(file);
    if (!info.isFile()) return { problem: "missing", detail: "not a regular file" };
    actual = info.size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    return { problem: "missing", detail: "no such file" };
  }
  if (actual !== size) return { problem: "size", detail: `size ${actual} bytes, the ledger says ${size}` };
  const hash = await sha256File(file);
  if (hash !== sha256) return { problem: "sha256", detail: `SHA-256 ${hash}, the ledger says ${sha256}` };
  return null;
}
