/**
 * `--idle-exit`: calls `onIdle` once nothing has run on this agent for `idleExitMs` — no task
 * running, none held ahead — so an agent in a SLURM allocation stops holding it while the sweep
 * has no work for it (work still gated, or taken by others). Looked at every second at most.
 */
export function watchIdle(options: {
  idleExitMs: number;
  busy: () => boolean;
  onIdle: (idleMs: number) => void;
  now?: () => number;
}): NodeJS.Timeout {
  const now = options.now ?? Date.now;
  let busyAt = now();
  let fired = false;
  const watchdog = setInterval(
    () => {
      if (fired) return;
      if (options.busy()) {
        busyAt = now();
        return;
      }
      const idleMs = now() - busyAt;
      if (idleMs < options.idleExitMs) return;
      fired = true;
      options.onIdle(idleMs);
    },
    Math.min(1000, options.idleExitMs),
  );
  watchdog.unref();
  return watchdog;
}
