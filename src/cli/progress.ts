import type { createLogUpdate } from "log-update";
import type { ProgressSample } from "../app/progress.js";

export type { ProgressSample };

/**
 * Live progress for `labsweep run`: redrawn in place on a terminal (counts by state, rate, ETA,
 * what runs now); a plain line every `plainEveryMs` otherwise, so logs and CI stay readable.
 */
export class ProgressView {
  private readonly startedAt: number;
  private startDone = -1;
  private lastPlain = 0;

  /**
   * The view for `stream`. log-update is loaded only for a terminal: its text-width tables
   * (string-width's Unicode regexes and segmenter) cost ~15 ms to build, a third of a short
   * run's start-up, for output that is never redrawn elsewhere.
   */
  static async open(stream: NodeJS.WriteStream, plainEveryMs?: number): Promise<ProgressView> {
    const tty = Boolean(stream.isTTY) && process.env.TERM !== "dumb";
    const draw = tty ? (await import("log-update")).createLogUpdate(stream) : null;
    return new ProgressView(stream, draw, plainEveryMs);
  }

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly draw: ReturnType<typeof createLogUpdate> | null,
    private readonly plainEveryMs = 10_000,
  ) {
    this.startedAt = Date.now();
  }

  update(sample: ProgressSample, force = false): void {
    const { counts } = sample;
    const done = counts.succeeded + counts.failed;
    if (this.startDone < 0) this.startDone = done;
    const elapsed = (sample.at - this.startedAt) / 1000;
    const rate = elapsed > 0 ? (done - this.startDone) / elapsed : 0;
    const left = counts.pending + counts.running + counts.blocked;
    const eta = rate > 0 ? formatSeconds(left / rate) : "—";
    const summary = `${done}/${counts.unique} done · ${counts.succeeded} ok · ${counts.failed} failed · ${counts.running} running · ${counts.pending} pending · ${counts.blocked} blocked · ${rate.toFixed(rate < 10 ? 2 : 0)}/s · ETA ${eta}`;
    if (this.draw) {
      const bar = progressBar(done, counts.unique, 30);
      const runningLines = sample.running.slice(0, 8).map((line) => `  ▸ ${line}`);
      this.draw([`${bar} ${summary}`, ...runningLines].join("\n"));
      return;
    }
    if (force || sample.at - this.lastPlain >= this.plainEveryMs) {
      this.lastPlain = sample.at;
      this.stream.write(`labsweep: ${summary}\n`);
    }
  }

  /** Leaves the last frame on screen and moves below it. */
  finish(): void {
    this.draw?.done();
  }

  /** Prints a message above the live frame. */
  note(message: string): void {
    if (this.draw) {
      this.draw.clear();
      this.stream.write(`${message}\n`);
    } else this.stream.write(`${message}\n`);
  }
}

function progressBar(done: number, total: number, width: number): string {
  const filled = total === 0 ? width : Math.round((done / total) * width);
  return `[${"█".repeat(filled)}${"░".repeat(width - filled)}]`;
}

export function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return "—";
  if (seconds < 60) return `${Math.round(seconds)}s`;
  if (seconds < 3600)
    return `${Math.floor(seconds / 60)}m${String(Math.round(seconds % 60)).padStart(2, "0")}s`;
  return `${Math.floor(seconds / 3600)}h${String(Math.round((seconds % 3600) / 60)).padStart(2, "0")}m`;
}
