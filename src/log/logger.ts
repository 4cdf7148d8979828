/**
 * One logger for every long-lived part: one line per notice, to a sink a test can collect (every
 * part takes a `warn` option), stderr by default. A scope names who speaks and is the line's
 * prefix: `logger("agent").warn("x")` writes "labsweep agent: x" (submitit and graphile/worker
 * scope their loggers the same way). Lines that never carried a prefix go to the sink as they are.
 */
export type Warn = (message: string) => void;

/** Who speaks: the coordinator side (`labsweep run`, `serve`) or an agent. */
export type LogScope = "labsweep" | "agent" | "slurm";

const PREFIX: Record<LogScope, string> = {
  labsweep: "labsweep: ",
  agent: "labsweep agent: ",
  slurm: "labsweep slurm: ",
};

export interface Logger {
  /** Trouble that was survived (a report re-sent, a channel reconnected). */
  warn: Warn;
  /** What the part is doing (a task started, the coordinator answered again). */
  info: Warn;
}

/** The default sink: one line on stderr. */
export const warnOnStderr: Warn = (message) => {
  process.stderr.write(`${message}\n`);
};

/** A logger for `scope`, writing to `sink`. (Default sink: stderr) */
export function logger(scope: LogScope, sink: Warn = warnOnStderr): Logger {
  const line = (message: string): void => sink(`${PREFIX[scope]}${message}`);
  return { warn: line, info: line };
}

/** An error in one line with the causes it wraps: "fetch failed: connect ECONNREFUSED …". */
export function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  return error.cause ? `${error.message}: ${describe(error.cause)}` : error.message;
}
