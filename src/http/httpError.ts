/**
 * An error raised on purpose with the HTTP status it answers with: the one error handler maps
 * it with `instanceof` and sends its message as `{error}` (as hono's HTTPException).
 */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}
