import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { copyFile, mkdir, open, realpath, rename, rm, stat } from "node:fs/promises";
import { dirname, join, sep } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { sha256File } from "../files/sha256File.js";
import { HttpError } from "../http/httpError.js";
import type { Db } from "../ledger/db.js";
import {
  type ArtifactRow,
  type ArtifactTarget,
  artifactTarget,
  taskArtifact,
  taskOutputDirs,
  taskSignature,
} from "../ledger/reads/artifacts.js";
import { recordArtifact, supersedeArtifacts } from "../ledger/recordArtifact.js";
import { describe, type Logger } from "../log/logger.js";
import {
  type ArtifactFile,
  artifactDir,
  artifactPathError,
  type CollectedArtifacts,
  type DeclaredArtifact,
  isSha256,
} from "../protocol/artifacts.js";
import type { AttemptOutcome } from "../protocol/interfaces.js";

/** `serve --artifact-limit` when not given: the largest artifact file accepted, in MiB. */
export const DEFAULT_ARTIFACT_LIMIT_MB = 1024;

/** How much of one artifact the coordinator holds: the bytes received, and whether it is stored. */
export interface ArtifactHeld {
  size: number;
  stored: boolean;
}

/**
 * Receives artifacts and stores them under each of the task's output dirs. An upload is appended
 * to a `.part` file (in the first output dir's `artifacts/.parts/`, so its rename into place is
 * atomic) at the offset the coordinator says it holds, so an upload cut by an outage resumes
 * where it stopped; once whole, its size and SHA-256 are checked, it is renamed into place (and
 * copied to the other output dirs), and only then recorded in the ledger.
 */
export class ArtifactStore {
  /** Parts being written now: a second upload of one part waits its turn (409). */
  private readonly writing = new Set<string>();
  /** Per task: storing one attempt's file waits for the one before (supersede, then place). */
  private readonly placing = new Map<number, Promise<unknown>>();

  constructor(
    private readonly db: Db,
    /** The largest artifact accepted, in bytes (`serve --artifact-limit`). */
    readonly limitBytes = DEFAULT_ARTIFACT_LIMIT_MB * 1024 * 1024,
  ) {}

  /**
   * How much of `path` the coordinator holds for the attempt (for an upload to resume). Given
   * the file's size and SHA-256, it is checked first, so an upload the coordinator would refuse
   * (over its limit) is refused before a byte is sent.
   */
  async held(
    agentId: string | null,
    attemptId: number,
    path: string,
    file: { size?: number; sha256?: string } = {},
  ): Promise<ArtifactHeld> {
    const { size, sha256 } = file;
    if (size !== undefined && sha256 !== undefined) checkFile({ path, size, sha256 }, this.limitBytes);
    else checkPath(path);
    const target = await this.target(agentId, attemptId);
    const stored = await taskArtifact(this.db, target.taskId, path);
    if (stored && stored.attempt_id === attemptId && (sha256 === undefined || stored.sha256 === sha256))
      return { size: stored.size, stored: true };
    return { size: await sizeOf(partPath(target, path)), stored: false };
  }

  /**
   * Appends `body` to the part at `offset` (which must be what the coordinator holds: 409 with
   * the size otherwise); once `file.size` bytes are held, checks and stores it.
   */
  async receive(
    agentId: string,
    attemptId: number,
    file: ArtifactFile,
    offset: number,
    body: Readable,
  ): Promise<ArtifactHeld> {
    checkFile(file, this.limitBytes);
    const target = await this.target(agentId, attemptId);
    const already = await this.held(agentId, attemptId, file.path, file);
    if (already.stored) return already;
    const part = partPath(target, file.path);
    if (this.writing.has(part))
      throw new HttpError(409, `${file.path} is being received already; ask again`, "upload_offset");
    if (offset !== already.size)
      throw new HttpError(
        409,
        `offset ${offset} is not what the coordinator holds of ${file.path} (${already.size} bytes)`,
        "upload_offset",
      );
    this.writing.add(part);
    try {
      await mkdir(dirname(part), { recursive: true });
      const received = await appendCapped(body, part, file.size - offset);
      if (offset + received < file.size) return { size: offset + received, stored: false };
      await this.storePart(target, file, part);
      return { size: file.size, stored: true };
    } finally {
      this.writing.delete(part);
    }
  }

  /** `labsweep run`: stores a file of the in-process agent's work dir, checked as an upload is. */
  async storeLocal(attemptId: number, dir: string, file: ArtifactFile): Promise<void> {
    checkFile(file, Number.POSITIVE_INFINITY);
    const target = await this.target(null, attemptId);
    const part = partPath(target, file.path);
    await mkdir(dirname(part), { recursive: true });
    await copyFile(join(dir, ...file.path.split("/")), part);
    await this.storePart(target, file, part);
  }

  private async target(agentId: string | null, attemptId: number): Promise<ArtifactTarget> {
    const target = await artifactTarget(this.db, attemptId);
    if (!target) throw new HttpError(404, `unknown attempt ${attemptId}`, "unknown_attempt");
    if (agentId !== null && target.worker !== agentId)
      throw new HttpError(409, `attempt ${attemptId} is not agent ${agentId}'s`, "foreign_attempt");
    return target;
  }

  /** Checks a whole part, then puts it in place in every output dir and records it. */
  private async storePart(target: ArtifactTarget, file: ArtifactFile, part: string): Promise<void> {
    const size = await sizeOf(part);
    const sha256 = await sha256File(part);
    if (size !== file.size || sha256 !== file.sha256) {
      await rm(part, { force: true });
      throw new HttpError(
        422,
        `${file.path} arrived as ${size} bytes with SHA-256 ${sha256}, not ${file.size} bytes with ${file.sha256}; send it again`,
      );
    }
    await this.oneAtATime(target.taskId, () => this.place(target, file, part));
  }

  private async place(target: ArtifactTarget, file: ArtifactFile, part: string): Promise<void> {
    const room = await supersedeArtifacts(this.db, target.taskId, target.attemptId);
    if ("refused" in room) {
      await rm(part, { force: true });
      throw new HttpError(410, `not stored: ${room.refused}`);
    }
    await removeFiles(target, room.superseded);
    await syncFile(part);
    const [first, ...others] = target.outputDirs.map((dir) => destination(dir, target.signature, file.path));
    if (first === undefined) throw new HttpError(409, `task ${target.taskId} has no output dir`);
    await rename(part, await prepared(first));
    for (const other of others) {
      const temp = `${await prepared(other)}.labsweep-tmp`;
      await copyFile(first.path, temp);
      await syncFile(temp);
      await rename(temp, other.path);
    }
    const row = { task_id: target.taskId, attempt_id: target.attemptId, stored_at: Date.now() };
    const late = await recordArtifact(this.db, {
      ...row,
      path: file.path,
      size: file.size,
      sha256: file.sha256,
    });
    if (late) {
      // Another attempt's success was recorded while this file was put in place (it declared no
      // file of this path, or it could not have been recorded): the file is this attempt's alone.
      await removeFiles(target, [file]);
      throw new HttpError(410, `not stored: ${late.refused}`);
    }
  }

  private async oneAtATime<T>(taskId: number, work: () => Promise<T>): Promise<T> {
    const before = this.placing.get(taskId) ?? Promise.resolve();
    const mine = before.catch(() => undefined).then(work);
    this.placing.set(taskId, mine);
    try {
      return await mine;
    } finally {
      if (this.placing.get(taskId) === mine) this.placing.delete(taskId);
    }
  }
}

/** Deletes the files of `rows` in each of the target's output dirs (those not there are skipped). */
async function removeFiles(
  target: Pick<ArtifactTarget, "outputDirs" | "signature">,
  rows: ReadonlyArray<Pick<ArtifactFile, "path">>,
): Promise<void> {
  for (const row of rows)
    for (const outputDir of target.outputDirs)
      await rm(join(artifactDir(outputDir, target.signature), ...row.path.split("/")), { force: true });
}

/**
 * After a success was recorded: deletes the files of the artifact rows it discarded (other
 * attempts', finishAttempt). A file left by a failure here (or a crash before) is one no row
 * names: `labsweep verify` reports it, `--fix` moves it aside. Never throws: the success stands.
 */
export async function removeArtifactFiles(db: Db, rows: readonly ArtifactRow[], log: Logger): Promise<void> {
  for (const taskId of new Set(rows.map((row) => row.task_id))) {
    try {
      const target = {
        outputDirs: await taskOutputDirs(db, taskId),
        signature: await taskSignature(db, taskId),
      };
      await removeFiles(
        target,
        rows.filter((row) => row.task_id === taskId),
      );
    } catch (error) {
      log.warn(
        `could not delete the artifacts another attempt of task ${taskId} left (${describe(error)}): \`labsweep verify\` reports them, \`--fix\` moves them aside`,
      );
    }
  }
}

/** A 400 for a path that could leave the task's dir (see artifactPathError). */
function checkPath(path: string): void {
  const bad = artifactPathError(path);
  if (bad) throw new HttpError(400, `artifact path ${JSON.stringify(path.slice(0, 200))} ${bad}`);
}

function checkFile(file: ArtifactFile, limitBytes: number): void {
  checkPath(file.path);
  if (!Number.isSafeInteger(file.size) || file.size < 0)
    throw new HttpError(400, "size must be a whole number ≥ 0");
  if (!isSha256(file.sha256)) throw new HttpError(400, "sha256 must be 64 lowercase hex digits");
  if (file.size > limitBytes)
    throw new HttpError(
      413,
      `${file.path} is ${file.size} bytes; this coordinator takes artifacts of up to ${limitBytes} bytes (serve --artifact-limit)`,
    );
}

/** The part of one attempt's file: flat, named by a hash of its path (no dirs, no long names). */
function partPath(target: ArtifactTarget, path: string): string {
  const name = `${target.attemptId}-${createHash("sha256").update(path).digest("hex").slice(0, 32)}.part`;
  return join(target.outputDirs[0] ?? ".", "artifacts", ".parts", name);
}

interface Destination {
  root: string;
  path: string;
}

function destination(outputDir: string, signature: string, path: string): Destination {
  const root = artifactDir(outputDir, signature);
  return { root, path: join(root, ...path.split("/")) };
}

/**
 * Creates the destination's dirs and returns its path, after checking that no symlink in the
 * output dir takes it elsewhere: whatever is already there, a file lands under the task's dir.
 */
async function prepared(destination: Destination): Promise<string> {
  await mkdir(dirname(destination.path), { recursive: true });
  const root = await realpath(destination.root);
  const parent = await realpath(dirname(destination.path));
  if (parent !== root && !parent.startsWith(root + sep))
    throw new HttpError(
      409,
      `${destination.path} leads outside ${destination.root} (a symlink): not written`,
    );
  return destination.path;
}

/** Appends `body` to `path`, failing (and cutting the part back) past `room` bytes. */
async function appendCapped(body: Readable, path: string, room: number): Promise<number> {
  let received = 0;
  const start = await sizeOf(path);
  try {
    await pipeline(
      body,
      async function* (chunks: AsyncIterable<Buffer>) {
        for await (const chunk of chunks) {
          received += chunk.length;
          if (received > room)
            throw new HttpError(400, `more bytes than the declared size (${room} were left)`);
          yield chunk;
        }
      },
      createWriteStream(path, { flags: "a" }),
    );
  } catch (error) {
    if (error instanceof HttpError) {
      await truncate(path, start);
      throw error;
    }
    // The sender went away mid-body: what arrived is kept, and the upload resumes from there.
    return (await sizeOf(path)) - start;
  }
  return received;
}

async function truncate(path: string, size: number): Promise<void> {
  // Not there: the write stream was torn down before it opened the part; nothing to cut back.
  if (size === 0) return rm(path, { force: true });
  const handle = await open(path, "r+");
  try {
    await handle.truncate(size);
  } finally {
    await handle.close();
  }
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return 0;
    throw error;
  }
}

async function syncFile(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * `labsweep run`: stores a success's artifacts from the in-process agent's work dir before its
 * report, so a recorded success has its files in place. A file that cannot be stored (a full
 * disk, a file changed after it was hashed) fails the attempt, saying why; one refused because
 * another attempt's success holds the task changes nothing (its report is ignored as stale).
 */
export async function storeBeforeReport<R extends { outcome: AttemptOutcome }>(
  store: ArtifactStore,
  attemptId: number,
  report: R,
  collected: CollectedArtifacts | undefined,
): Promise<R & { artifacts?: DeclaredArtifact[] }> {
  const outcome = report.outcome;
  if (!collected || outcome.kind !== "succeeded") return report;
  // The success declares what it stored, as a remote agent's report does (FinishRequest).
  const declared = { ...report, artifacts: collected.files.map(({ path, sha256 }) => ({ path, sha256 })) };
  try {
    for (const file of collected.files) await store.storeLocal(attemptId, collected.dir, file);
    return declared;
  } catch (error) {
    if (error instanceof HttpError && error.statusCode === 410) return declared;
    const why = error instanceof Error ? error.message : String(error);
    const failed: AttemptOutcome = {
      kind: "failed",
      exitCode: 0,
      signal: null,
      error: `its artifacts could not be stored: ${why}`,
      wallSeconds: outcome.wallSeconds,
    };
    return { ...report, outcome: failed };
  }
}
