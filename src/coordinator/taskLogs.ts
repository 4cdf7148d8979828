import { appendFile, type FileHandle, mkdir, open, readFile, stat, writeFile } from "node:fs/promises";
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from "../files/privateFiles.js";
import type { Db } from "../ledger/db.js";
import { attemptOfTask } from "../ledger/reads/attempts.js";
import type { AttemptRow } from "../ledger/rows.js";
import { attemptFiles } from "../protocol/attemptFiles.js";

/** Past this size a streamed log keeps only its tail (the end is where the error is). */
const LOG_CAP_BYTES = 2 * 1024 * 1024;
const LOG_KEEP_BYTES = 1024 * 1024;

/** Where an attempt's log lives in the coordinator's state dir (the agent's path when local). */
export function logPathOf(stateDir: string, attempt: AttemptRow): string {
  // `||`: an empty log_path (recorded by older coordinators) means "not recorded" too.
  return attempt.log_path || attemptFiles(stateDir, attempt.task_id, attempt.number).logPath;
}

/**
 * Appends a chunk an agent streamed. `offset` is the chunk's position in the agent's file, so a
 * re-sent chunk is not appended twice; the file is capped, keeping the tail.
 */
export async function appendLogChunk(
  stateDir: string,
  attempt: AttemptRow,
  offset: number,
  text: string,
): Promise<void> {
  const files = attemptFiles(stateDir, attempt.task_id, attempt.number);
  await mkdir(files.dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  const progressPath = `${files.logPath}.received`;
  const received = Number((await readFile(progressPath, "utf8").catch(() => "0")) || 0);
  // Offsets are bytes of the agent's log file, so compare and cut in bytes, not UTF-16 units.
  const bytes = Buffer.from(text, "utf8");
  if (offset + bytes.length <= received) return;
  const fresh = offset >= received ? bytes : bytes.subarray(received - offset);
  await appendFile(files.logPath, fresh, { mode: PRIVATE_FILE_MODE });
  await writeFile(progressPath, String(Math.max(received, offset + bytes.length)), {
    mode: PRIVATE_FILE_MODE,
  });
  const size = (await stat(files.logPath)).size;
  if (size > LOG_CAP_BYTES) {
    const content = await readFile(files.logPath);
    const tail = content.subarray(content.length - LOG_KEEP_BYTES);
    await writeFile(files.logPath, Buffer.concat([Buffer.from("[… earlier output dropped …]\n"), tail]));
  }
}

/** The most bytes of a log one response carries: a viewer cannot make the server hold a whole log. */
export const LOG_RANGE_CAP = 1024 * 1024;

/**
 * Which bytes of a log to read: `from` an offset, or the `tail` (the last bytes); at most `limit`
 * bytes, never more than LOG_RANGE_CAP.
 */
export type LogRange = { from: number; limit?: number; last?: number } | { tail: true; limit?: number };

/** A piece of a log: its bytes, where they start, and the log's whole size. */
export interface LogPiece {
  attempt: AttemptRow;
  bytes: Buffer;
  offset: number;
  size: number;
}

/**
 * A piece of the log of a task's latest (or a given) attempt, or null when there is none yet.
 * Only the asked-for bytes are read: the log itself may be any size.
 */
export async function readTaskLog(
  db: Db,
  stateDir: string,
  taskId: number,
  attemptNumber: number | undefined,
  range: LogRange = { tail: true },
): Promise<LogPiece | null> {
  const attempt = await attemptOfTask(db, taskId, attemptNumber);
  if (!attempt) return null;
  let handle: FileHandle;
  try {
    handle = await open(logPathOf(stateDir, attempt), "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT")
      return { attempt, bytes: Buffer.alloc(0), offset: 0, size: 0 };
    throw error;
  }
  try {
    const size = (await handle.stat()).size;
    const limit = Math.min(range.limit ?? LOG_RANGE_CAP, LOG_RANGE_CAP);
    const offset = "tail" in range ? Math.max(0, size - limit) : Math.min(range.from, size);
    const end = "tail" in range ? size : Math.min(size, offset + limit, range.last ?? size);
    const bytes = Buffer.alloc(Math.max(0, end - offset));
    let read = 0;
    while (read < bytes.length) {
      const { bytesRead } = await handle.read(bytes, read, bytes.length - read, offset + read);
      if (bytesRead === 0) break; // the file shrank meanwhile (trimmed to its tail)
      read += bytesRead;
    }
    return { attempt, bytes: bytes.subarray(0, read), offset, size };
  } finally {
    await handle.close();
  }
}
