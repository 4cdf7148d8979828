/** Page cursors: the last row's sort key, as base64url JSON (opaque to the page). */
export function encodeCursor(values: unknown[]): string {
  return Buffer.from(JSON.stringify(values)).toString("base64url");
}

/** Bad query input (a cursor not given out, an unknown sort); the HTTP layer answers 400. */
export class DashboardQueryError extends Error {
  override readonly name = "DashboardQueryError";
}

/** The values of a cursor with at most `length` keys, each a number, a string or null. */
export function decodeCursor(text: string, length: number): unknown[] {
  let values: unknown;
  try {
    values = JSON.parse(Buffer.from(text, "base64url").toString("utf8"));
  } catch {
    throw new DashboardQueryError("after: not a cursor this dashboard gave out");
  }
  const valid =
    Array.isArray(values) &&
    values.length >= 1 &&
    values.length <= length &&
    values.every((value) => value === null || typeof value === "number" || typeof value === "string");
  if (!valid) throw new DashboardQueryError("after: not a cursor this dashboard gave out");
  return values as unknown[];
}

/** A cursor holding one task id. */
export function decodeIdCursor(text: string): number {
  const [id] = decodeCursor(text, 1);
  if (typeof id !== "number" || !Number.isInteger(id))
    throw new DashboardQueryError("after: not a task cursor");
  return id;
}
