import { HttpError } from "../../http/httpError.js";
import { LOG_RANGE_CAP, type LogRange } from "../taskLogs.js";

/**
 * The piece of a log a request asks for: `?offset=N&limit=M` (what `labsweep logs -f` and the
 * dashboard follow with), or an HTTP `Range: bytes=A-B | A- | -N`, else the tail. Every answer is
 * at most LOG_RANGE_CAP bytes; `ranged` says the reply is 206 with a Content-Range.
 */
export function logRangeOf(
  query: { offset?: string; limit?: string },
  rangeHeader: string | undefined,
): { range: LogRange; ranged: boolean } {
  const limit = query.limit === undefined ? undefined : whole("limit", query.limit, 1);
  if (query.offset !== undefined)
    return { range: { from: whole("offset", query.offset, 0), limit }, ranged: false };
  if (rangeHeader !== undefined) {
    const match = /^bytes=(\d*)-(\d*)$/.exec(rangeHeader.trim());
    if (match && (match[1] || match[2])) {
      const [first, last] = [match[1] ?? "", match[2] ?? ""];
      if (first === "")
        return { range: { tail: true, limit: Math.min(safe(last), limit ?? LOG_RANGE_CAP) }, ranged: true };
      const from = safe(first);
      if (last !== "" && safe(last) < from)
        throw new HttpError(416, `Range ${rangeHeader} ends before it starts`);
      return { range: { from, last: last === "" ? undefined : safe(last) + 1, limit }, ranged: true };
    }
    // Several ranges or another unit: a server may ignore a Range it does not serve (RFC 9110).
  }
  return { range: { tail: true, limit }, ranged: false };
}

function whole(name: string, text: string, min: number): number {
  if (!/^\d{1,15}$/.test(text) || Number(text) < min)
    throw new HttpError(
      400,
      `${name} must be a whole number${min > 0 ? ` ≥ ${min}` : ""}, got "${text.slice(0, 40)}"`,
    );
  return Number(text);
}

/** Digits of a Range: beyond 2^53 is beyond any file, so clamp instead of losing precision. */
function safe(digits: string): number {
  return digits.length > 15 ? Number.MAX_SAFE_INTEGER : Number(digits);
}
