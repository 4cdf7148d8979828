import type { Dirent } from "node:fs";
import { mkdir, readdir, rename, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
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

/** A file under `{output_dir}/artifacts/` that no artifact row names. */
export interface UnknownArtifact {
  outputDir: string;
  /** Its path below `{output_dir}/artifacts/`, `/`-separated: `<signature>/<path>`. */
  path: string;
  /** The whole path of the file. */
  file: string;
  /** The task whose dir holds it, when the ledger has artifacts of that signature. */
  taskId: number | null;
}

/**
 * Files in the artifact dirs of `outputDirs` that the ledger does not record: another attempt's
 * left behind (a crash between a success's commit and the deletion of the files it superseded),
 * or put there by hand. Uploads in progress (`.parts/`) and what `--fix` moved aside (`.foreign-*`)
 * are not looked at.
 */
export async function unknownArtifactFiles(
  db: Db,
  outputDirs: readonly string[],
): Promise<UnknownArtifact[]> {
  const known = new Map<string, { taskId: number; paths: Set<string> }>();
  let after: { taskId: number; path: string } | null = null;
  for (;;) {
    const page = await artifactPage(db, after, PAGE);
    for (const row of page) {
      const entry = known.get(row.signature) ?? { taskId: row.task_id, paths: new Set<string>() };
      entry.paths.add(row.path);
      known.set(row.signature, entry);
    }
    const last = page.at(-1);
    if (!last || page.length < PAGE) break;
    after = { taskId: last.task_id, path: last.path };
  }
  const unknown: UnknownArtifact[] = [];
  for (const outputDir of outputDirs) {
    const root = join(outputDir, "artifacts");
    for (const signature of (await entriesOf(root)).filter((entry) => !entry.name.startsWith("."))) {
      const task = known.get(signature.name);
      const paths = signature.isDirectory() ? await filesUnder(join(root, signature.name)) : [""];
      for (const path of paths.filter((each) => !task?.paths.has(each))) {
        const whole = path === "" ? signature.name : `${signature.name}/${path}`;
        unknown.push({
          outputDir,
          path: whole,
          file: join(root, ...whole.split("/")),
          taskId: task?.taskId ?? null,
        });
      }
    }
  }
  return unknown;
}

/**
 * `verify --fix`: moves unknown files to `{output_dir}/artifacts/.foreign-<time>/<signature>/<path>`,
 * never deleting one. Returns the dirs they went to.
 */
export async function moveUnknownArtifacts(
  unknown: readonly UnknownArtifact[],
  now: Date,
): Promise<string[]> {
  const stamp = now.toISOString().replace(/[:.]/g, "-");
  const dirs = new Set<string>();
  for (const { outputDir, path, file } of unknown) {
    const aside = join(outputDir, "artifacts", `.foreign-${stamp}`);
    const target = join(aside, ...path.split("/"));
    await mkdir(dirname(target), { recursive: true });
    await rename(file, target);
    dirs.add(aside);
  }
  return [...dirs];
}

/** Every non-directory entry below `dir` (symlinks not followed), `/`-separated. */
async function filesUnder(dir: string): Promise<string[]> {
  const files: string[] = [];
  for (const entry of await entriesOf(dir)) {
    if (!entry.isDirectory()) files.push(entry.name);
    else for (const below of await filesUnder(join(dir, entry.name))) files.push(`${entry.name}/${below}`);
  }
  return files;
}

/** A dir's entries by name; none when it does not exist. */
async function entriesOf(dir: string): Promise<Dirent[]> {
  try {
    const entries = await readdir(dir, { withFileTypes: true });
    return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
}
