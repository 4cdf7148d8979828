/**
 * Signals a phase may name as `stop_signal`: the ones training code commonly catches to save a
 * checkpoint. SIGKILL and SIGSTOP cannot be caught, so a task could never act on them.
 */
export const STOP_SIGNALS = ["SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2", "SIGHUP", "SIGQUIT"] as const;

export type StopSignal = (typeof STOP_SIGNALS)[number];

/** `stop_signal` when a config leaves it out, and for ledgers written before it existed. */
export const DEFAULT_STOP_SIGNAL: StopSignal = "SIGTERM";

/** "TERM", "sigterm" and "SIGTERM" all name SIGTERM; null when the text names no allowed signal. */
export function toStopSignal(text: string): StopSignal | null {
  const upper = text.trim().toUpperCase();
  const name = upper.startsWith("SIG") ? upper : `SIG${upper}`;
  return (STOP_SIGNALS as readonly string[]).includes(name) ? (name as StopSignal) : null;
}

/** Why `text` cannot be a stop_signal, or null when it can. */
export function stopSignalProblem(text: string): string | null {
  if (toStopSignal(text) !== null) return null;
  const upper = text.trim().toUpperCase();
  const name = upper.startsWith("SIG") ? upper : `SIG${upper}`;
  if (name === "SIGKILL" || name === "SIGSTOP") {
    return `${name} cannot be caught, so a task could never save a checkpoint on it; labsweep sends SIGKILL itself once stop_grace runs out. Use one of ${STOP_SIGNALS.join(", ")}`;
  }
  return `"${text}" is not a signal labsweep stops tasks with; use one of ${STOP_SIGNALS.join(", ")} (the SIG prefix may be left out)`;
}
