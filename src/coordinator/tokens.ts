import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";

export const TOKENS_FILE = "tokens.json";

/** The agent token may lease and report; the viewer token may only read. */
export interface Tokens {
  agent: string;
  viewer: string;
}

/**
 * The coordinator's tokens: those given (flags or LABSWEEP_AGENT_TOKEN / LABSWEEP_VIEWER_TOKEN)
 * win; otherwise the ones stored in the state dir; otherwise new random ones, stored with mode
 * 0600 so only their owner can read them (`labsweep token` prints them from there).
 */
export function loadOrCreateTokens(stateDir: string, given: Partial<Tokens> = {}): Tokens {
  const path = join(stateDir, TOKENS_FILE);
  const stored = existsSync(path) ? (JSON.parse(readFileSync(path, "utf8")) as Partial<Tokens>) : {};
  const tokens: Tokens = {
    agent: given.agent ?? stored.agent ?? newToken(),
    viewer: given.viewer ?? stored.viewer ?? newToken(),
  };
  if (tokens.agent === tokens.viewer) throw new Error("the agent and viewer tokens must differ");
  if (tokens.agent !== stored.agent || tokens.viewer !== stored.viewer) writeTokens(stateDir, tokens);
  return tokens;
}

/** The stored tokens, for `labsweep token`; null when the coordinator never started here. */
export function readStoredTokens(stateDir: string): Tokens | null {
  const path = join(stateDir, TOKENS_FILE);
  if (!existsSync(path)) return null;
  return JSON.parse(readFileSync(path, "utf8")) as Tokens;
}

function newToken(): string {
  return randomBytes(24).toString("base64url");
}

function writeTokens(stateDir: string, tokens: Tokens): void {
  mkdirSync(stateDir, { recursive: true });
  const path = join(stateDir, TOKENS_FILE);
  const temp = `${path}.tmp-${process.pid}`;
  const fd = openSync(temp, "w", 0o600);
  try {
    writeSync(fd, `${JSON.stringify(tokens, null, 2)}\n`);
  } finally {
    closeSync(fd);
  }
  chmodSync(temp, 0o600);
  renameSync(temp, path);
}

/** Compares a presented token with the expected one in constant time. */
export function tokenMatches(presented: string | undefined, expected: string): boolean {
  if (!presented) return false;
  const a = createHash("sha256").update(presented).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}

/** The token of an `Authorization: Bearer …` header. */
export function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  return match?.[1];
}

/** Whether a request's peer address is this machine's loopback. */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === "::1" || address.startsWith("127.") || address.startsWith("::ffff:127.");
}
