import { HttpError, isAbort, UnauthorizedError } from "./httpClient.js";

/**
 * Contact older than this (or half the lease, if shorter) is in doubt: heartbeats (every 3 s by
 * default) would have refreshed it. Well inside the 12 s lease, so no lease of this agent can have
 * run out unnoticed.
 */
const CONTACT_FRESH_MS = 5000;

/**
 * What an agent knows of its link to the coordinator: when it last answered, whether a request
 * has failed for want of it since, and whether it refused the token (fatal: told once).
 */
export class Contact {
  private lastContactAt = 0;
  private troubled = false;
  private fatal = false;
  private freshMs = CONTACT_FRESH_MS;

  constructor(private readonly onFatal: (error: UnauthorizedError) => void) {}

  /** Heartbeats come at most half a lease apart: contact is fresh for no longer. */
  leaseIs(leaseMs: number): void {
    this.freshMs = Math.min(CONTACT_FRESH_MS, leaseMs / 2);
  }

  /** Whether the coordinator has been heard from lately, with nothing failing since. */
  sound(): boolean {
    return !this.troubled && Date.now() - this.lastContactAt < this.freshMs;
  }

  /** Runs a request, noting whether the coordinator answered it. */
  async guard<T>(call: () => Promise<T>): Promise<T> {
    try {
      const answer = await call();
      this.lastContactAt = Date.now();
      this.troubled = false;
      return answer;
    } catch (error) {
      this.noteTrouble(error);
      throw error;
    }
  }

  /** A request that failed for want of the coordinator (not one it answered with a 4xx). */
  noteTrouble(error: unknown): void {
    this.noteFatal(error);
    if (!(error instanceof HttpError && error.status < 500) && !isAbort(error)) this.troubled = true;
  }

  noteFatal(error: unknown): void {
    if (!(error instanceof UnauthorizedError) || this.fatal) return;
    this.fatal = true;
    this.onFatal(error);
  }
}
