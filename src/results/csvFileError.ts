/**
 * A results file that cannot be read or written: permissions, a full disk, a malformed CSV. It
 * concerns that file alone, so the results writer fails its dir and goes on with the others.
 */
export class CsvFileError extends Error {
  override readonly name = "CsvFileError";
}

/** An error and its causes on one line: the file, then the system's reason. */
export function errorText(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  return error.cause ? `${error.message}: ${errorText(error.cause)}` : error.message;
}
