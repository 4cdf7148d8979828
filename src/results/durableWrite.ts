import type { BigIntStats } from "node:fs";
import { type FileHandle, mkdir, open } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";
import { CsvFileError } from "./csvFileError.js";

// Writes that survive a power loss once they return: fsync of the file, and of the directories
// whose entries changed.

/**
 * Writes and fsyncs `bytes`, and returns the file's state right after, seen through the handle,
 * or null if that cannot be had: it only feeds `knownFiles`, and failing here would report a
 * durable write as failed (and invite a retry that duplicates rows).
 */
export async function writeAndSync(
  path: string,
  flags: "wx" | number,
  bytes: Buffer,
): Promise<BigIntStats | null> {
  const handle = await open(path, flags);
  try {
    await writeFully(handle, bytes);
    await handle.sync();
    return await handle.stat({ bigint: true }).catch(() => null);
  } finally {
    await handle.close();
  }
}

/** Normally a single write; loops only if the kernel reports a short write (e.g. disk full). */
async function writeFully(handle: FileHandle, bytes: Buffer): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset);
    offset += bytesWritten;
  }
}

export async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** mkdir -p, then fsync the parent of each directory it created so they survive a power loss. */
export async function createDirectoryDurably(directory: string): Promise<void> {
  let firstCreated: string | undefined;
  try {
    firstCreated = await mkdir(directory, { recursive: true });
  } catch (error) {
    throw new CsvFileError(`cannot create directory ${directory}`, { cause: error });
  }
  if (firstCreated === undefined) return;
  let created = firstCreated;
  for (const part of relative(firstCreated, directory).split(sep).filter(Boolean)) {
    await syncDirectory(dirname(created));
    created = join(created, part);
  }
  await syncDirectory(dirname(created));
}
