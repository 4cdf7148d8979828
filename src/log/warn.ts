/**
 * Notices of trouble that was survived (a report re-sent, a channel reconnected): one line each.
 * Every long-lived part takes a `warn` option so tests can collect them; this is the one default.
 */
export type Warn = (message: string) => void;

/** The default `warn`: one line on stderr. */
export const warnOnStderr: Warn = (message) => {
  process.stderr.write(`${message}\n`);
};

/** An error in one line with the causes it wraps: "fetch failed: connect ECONNREFUSED …". */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  return error.cause instanceof Error ? `${error.message}: ${describeError(error.cause)}` : error.message;
}
