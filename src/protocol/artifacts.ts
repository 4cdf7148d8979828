import { join } from "node:path";

/**
 * Artifacts: files a task wrote in its attempt's work dir that its phase's `artifacts:` globs
 * match, collected by the agent after a success and stored by the coordinator under each output
 * dir's `artifacts/`. What both sides agree on: the manifest entry and which paths are allowed.
 */

/** One collected file: its path relative to the work dir (`/`-separated), size and SHA-256 (hex). */
export interface ArtifactFile {
  path: string;
  size: number;
  sha256: string;
}

/**
 * An artifact as a success's finish report declares it: the coordinator records the success only
 * if each is stored as that attempt's own with that SHA-256, so a recorded success never has
 * another attempt's files beside its result.
 */
export type DeclaredArtifact = Pick<ArtifactFile, "path" | "sha256">;

/**
 * The most files one attempt may hand back: the finish report lists them all, and must fit a
 * request body (1 MiB) with its result.
 */
export const MAX_ARTIFACT_FILES = 1000;

/** A successful attempt's artifacts: the files, in `dir` (the work dir, or where they were moved). */
export interface CollectedArtifacts {
  dir: string;
  files: ArtifactFile[];
}

/**
 * Where a task's artifacts live in one of its output dirs: `{output_dir}/artifacts/<signature>/`.
 * The signature is the task's identity: the same for every attempt (and every ledger), and
 * unique per task. The one owner of the naming: the store, the download route and verify use it.
 */
export function artifactDir(outputDir: string, signature: string): string {
  return join(outputDir, "artifacts", signature);
}

/** The longest artifact path accepted, in UTF-8 bytes (PATH_MAX is 4096; the store adds its dirs). */
export const ARTIFACT_PATH_MAX_BYTES = 1024;
/** The longest single name in a path: most filesystems' NAME_MAX. */
const NAME_MAX_BYTES = 255;

/**
 * Why `path` cannot name an artifact, or null when it can: relative, `/`-separated, no empty,
 * `.` or `..` segment, no NUL, backslash or control character, within the length limits. The
 * coordinator refuses such a path (400); it could otherwise write outside the task's dir.
 */
export function artifactPathError(path: string): string | null {
  if (path.length === 0) return "is empty";
  if (Buffer.byteLength(path) > ARTIFACT_PATH_MAX_BYTES)
    return `is longer than ${ARTIFACT_PATH_MAX_BYTES} bytes`;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\u0000-\u001f\u007f\\]/.test(path)) return "holds a NUL, control character or backslash";
  if (path.startsWith("/")) return "is absolute";
  for (const segment of path.split("/")) {
    if (segment === "" || segment === "." || segment === "..")
      return "has an empty, `.` or `..` segment (artifact paths are relative and plain)";
    if (Buffer.byteLength(segment) > NAME_MAX_BYTES) return `has a name longer than ${NAME_MAX_BYTES} bytes`;
  }
  return null;
}

/** Whether `value` is a well-formed SHA-256 in lowercase hex. */
export function isSha256(value: string): boolean {
  return /^[0-9a-f]{64}$/.test(value);
}
