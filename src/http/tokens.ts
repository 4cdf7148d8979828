import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import {
  closeSync,
  constants,
  fstatSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { ensurePrivateDir, PRIVATE_FILE_MODE } from "../files/privateFiles.js";

export const TOKENS_FILE = "tokens.json";

/**
 * Three powers, three tokens. The agent token leases and reports (what a compute node needs);
 * the admin token changes the sweep (`add`, `cancel`, `retry`), so a compromised compute node
 * cannot queue commands onto every other machine; the viewer token only reads. Admin and agent
 * tokens may read too.
 */
export interface Tokens {
  agent: string;
  viewer: string;
  admin: string;
}

export const TOKEN_KINDS = ["agent", "viewer", "admin"] as const;

/** A token that cannot be used: wrong shape, unreadable file, a symlink where tokens.json is. */
export class TokenError extends Error {
  override name = "TokenError";
}

/**
 * The coordinator's tokens: those given (flags, `--tokens-file`, LABSWEEP_*_TOKEN) win; otherwise
 * the ones stored in the state dir; otherwise new random ones, stored with mode 0600 so only their
 * owner can read them (`labsweep token` prints them from there).
 */
export function loadOrCreateTokens(stateDir: string, given: Partial<Tokens> = {}): Tokens {
  const stored = readStoredTokens(stateDir) ?? {};
  const tokens: Tokens = {
    agent: given.agent ?? stored.agent ?? newToken(),
    viewer: given.viewer ?? stored.viewer ?? newToken(),
    admin: given.admin ?? stored.admin ?? newToken(),
  };
  if (new Set(TOKEN_KINDS.map((kind) => tokens[kind])).size !== TOKEN_KINDS.length)
    throw new TokenError("the agent, viewer and admin tokens must all differ");
  if (TOKEN_KINDS.some((kind) => tokens[kind] !== stored[kind])) writeTokens(stateDir, tokens);
  return tokens;
}

/**
 * The stored tokens, for `labsweep token`; null when the coordinator never started here. A
 * symlink planted at tokens.json is refused, never followed (O_NOFOLLOW).
 */
export function readStoredTokens(stateDir: string): Partial<Tokens> | null {
  const path = join(stateDir, TOKENS_FILE);
  const text = readNoFollow(path);
  if (text === null) return null;
  return parseTokensJson(text, path);
}

/**
 * `serve --tokens-file PATH`: a JSON object with any of `agent`, `viewer`, `admin`. A file other
 * users may read is refused: the tokens are the keys to every machine running agents.
 */
export function readTokensFile(path: string): Partial<Tokens> {
  let text: string;
  let mode: number;
  try {
    const fd = openSync(path, "r");
    try {
      mode = fstatSync(fd).mode;
      text = readFileSync(fd, "utf8");
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    throw new TokenError(`cannot read the tokens file ${path}: ${(error as NodeJS.ErrnoException).code}`, {
      cause: error,
    });
  }
  if (mode & 0o077)
    throw new TokenError(
      `the tokens file ${path} can be read by other users (mode ${(mode & 0o777).toString(8)}): chmod 600 it`,
    );
  return parseTokensJson(text, path);
}

/** `--token-file PATH`: the file's first line (a trailing newline is not part of the token). */
export function readTokenFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new TokenError(`cannot read the token file ${path}: ${(error as NodeJS.ErrnoException).code}`, {
      cause: error,
    });
  }
  const token = text.split(/\r?\n/)[0]?.trim() ?? "";
  if (!isTokenShaped(token))
    throw new TokenError(`the token file ${path} must hold one token: printable ASCII, no spaces`);
  return token;
}

/** A token travels in an HTTP header: printable ASCII without spaces. */
export function isTokenShaped(token: string): boolean {
  return /^[\x21-\x7e]+$/.test(token);
}

function parseTokensJson(text: string, path: string): Partial<Tokens> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new TokenError(`${path} is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  if (value === null || typeof value !== "object" || Array.isArray(value))
    throw new TokenError(`${path} must hold a JSON object with "agent", "viewer" and "admin" tokens`);
  const result: Partial<Tokens> = {};
  for (const [key, token] of Object.entries(value)) {
    if (!(TOKEN_KINDS as readonly string[]).includes(key))
      throw new TokenError(`${path}: unknown key "${key}" (allowed: ${TOKEN_KINDS.join(", ")})`);
    if (typeof token !== "string" || !isTokenShaped(token))
      throw new TokenError(`${path}: "${key}" must be a string of printable ASCII without spaces`);
    result[key as keyof Tokens] = token;
  }
  return result;
}

/** A file's text, null when absent; a symlink is an error (ELOOP from O_NOFOLLOW). */
function readNoFollow(path: string): string | null {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return null;
    if (code === "ELOOP")
      throw new TokenError(`${path} is a symbolic link: refusing to follow it (remove it and start again)`, {
        cause: error,
      });
    throw error;
  }
  try {
    return readFileSync(fd, "utf8");
  } finally {
    closeSync(fd);
  }
}

function newToken(): string {
  return randomBytes(24).toString("base64url");
}

/**
 * A fresh temp file (O_EXCL|O_NOFOLLOW, mode 0600: never an existing file or a planted link),
 * renamed over tokens.json. A symlink at tokens.json was refused when it was read.
 */
function writeTokens(stateDir: string, tokens: Tokens): void {
  ensurePrivateDir(stateDir);
  const path = join(stateDir, TOKENS_FILE);
  const temp = `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  const fd = openSync(temp, flags, PRIVATE_FILE_MODE);
  try {
    writeSync(fd, `${JSON.stringify(tokens, null, 2)}\n`);
  } catch (error) {
    closeSync(fd);
    rmSync(temp, { force: true });
    throw error;
  }
  closeSync(fd);
  renameSync(temp, path);
}

/** Compares a presented token with the expected one in constant time. */
export function tokenMatches(presented: string | undefined, expected: string): boolean {
  if (!presented) return false;
  const a = createHash("sha256").update(presented).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}

/**
 * What the dashboard's cookie holds: an HMAC of a fixed label keyed by the viewer token. It opens
 * the reads as the token does, but a stolen cookie does not reveal the token (which also works
 * as a bearer against the API from anywhere), and it changes when the token does.
 */
export function viewerCookieValue(viewerToken: string): string {
  return createHmac("sha256", viewerToken).update("labsweep dashboard session v1").digest("base64url");
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

/** The warning for serving tokens over plain HTTP beyond this machine; null when there is none. */
export function clearTextWarning(host: string, tls: boolean): string | null {
  if (tls || isLoopback(host) || host.toLowerCase() === "localhost") return null;
  return `labsweep: warning: serving on ${host} without TLS — tokens travel in clear text; pass --tls-cert/--tls-key`;
}
