import { appendFile, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { attemptFiles } from "../agent/taskFiles.js";
import type { Db } from "../ledger/db.js";
import type { AttemptRow } from "../ledger/rows.js";

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
  await mkdir(files.dir, { recursive: true });
  const progressPath = `${files.logPath}.received`;
  const received = Number((await readFile(progressPath, "utf8").catch(() => "0")) || 0);
  // Offsets are bytes of the agent's log file, so compare and cut in bytes, not UTF-16 units.
  const bytes = Buffer.from(text, "utf8");
  if (offset + bytes.length <= received) return;
  const fresh = offset >= received ? bytes : bytes.subarray(received - offset);
  await appendFile(files.logPath, fresh);
  await writeFile(progressPath, String(Math.max(received, offset + bytes.length)));
  const size = (await stat(files.logPath)).size;
  if (size > LOG_CAP_BYTES) {
    const content = await readFile(files.logPath);
    const tail = content.subarray(content.length - LOG_KEEP_BYTES);
    await writeFile(files.logPath, Buffer.concat([Buffer.from("[… earlier output dropped …]\n"), tail]));
  }
}

/** The log of a task's latest (or a given) attempt, or null when there is none yet. */
export async function readTaskLog(
  db: Db,
  stateDir: string,
  taskId: number,
  attemptNumber?: number,
): Promise<{ attempt: AttemptRow; text: string } | null> {
  const attempt = await db.one<AttemptRow>(
    attemptNumber === undefined
      ? "SELECT * FROM attempts WHERE task_id = $1 ORDER BY number DESC LIMIT 1"
      : "SELECT * FROM attempts WHERE task_id = $1 AND number = $2",
    attemptNumber === undefined ? [taskId] : [taskId, attemptNumber],
  );
  if (!attempt) return null;
  const text = await readFile(logPathOf(stateDir, attempt), "utf8").catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return "";
    throw error;
  });
  return { attempt, text };
}
