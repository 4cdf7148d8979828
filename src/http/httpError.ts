import type { ErrorCode } from "../protocol/http.js";

/**
 * An error raised on purpose with the HTTP status it answers with, and the `code` a client may
 * branch on: the one error handler maps it with `instanceof` and sends `{error, code}` (as hono's
 * HTTPException).
 */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly code?: ErrorCode,
  ) {
    super(message);
  }
}
