import type { FastifyReply, FastifyRequest } from "fastify";
import { bearerToken, isLoopback, type Tokens, tokenMatches, viewerCookieValue } from "./tokens.js";

/**
 * Who may call a route: agents (the agent token), the admin (the admin token: add, cancel,
 * retry), or readers (the viewer token — as a bearer or the dashboard's cookie —, or the agent or
 * admin token; tokenless from loopback where trusted, see `trustedLoopback`).
 */
export type Access = "agent" | "admin" | "viewer";

declare module "fastify" {
  interface FastifyContextConfig {
    access?: Access;
  }
}

/** Who is checked against the tokens: what `allowed` needs to know. */
export interface AccessOptions {
  tokens: Tokens;
  /** Tokenless reads from a trusted loopback peer (see `trustedLoopback`). (Default: false) */
  trustLoopback?: boolean;
}

/**
 * An onRequest hook: a route whose config names an `access` kind answers 401 to a request
 * without the right token. Routes without one are open (the health check, the page's login).
 */
export function accessHook(options: AccessOptions) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const access = request.routeOptions.config.access;
    if (!access) return;
    if (!allowed(access, request, options)) {
      await reply.code(401).send({
        error: `missing or wrong token: this needs the ${access} token (Authorization: Bearer <token>)`,
      });
    }
  };
}

/** The dashboard's cookie (HttpOnly, SameSite=Strict): a digest of the viewer token, not the token. */
export const VIEWER_COOKIE = "labsweep_viewer";

/** Whether a request may call a route of this access kind. */
export function allowed(access: Access, request: FastifyRequest, options: AccessOptions): boolean {
  const { tokens } = options;
  const token = bearerToken(request.headers.authorization);
  if (access === "agent") return tokenMatches(token, tokens.agent);
  if (tokenMatches(token, tokens.admin)) return true;
  if (access === "admin") return false;
  return (
    tokenMatches(token, tokens.viewer) ||
    tokenMatches(token, tokens.agent) ||
    tokenMatches(cookieValue(request.headers.cookie, VIEWER_COOKIE), viewerCookieValue(tokens.viewer)) ||
    (options.trustLoopback === true && trustedLoopback(request))
  );
}

/**
 * Loopback trust: the peer is this machine *and* the Host header names it exactly. A page on
 * another site that re-binds its DNS name to 127.0.0.1 reaches us from loopback, but its
 * browser sends that name as the Host.
 */
export function trustedLoopback(request: FastifyRequest): boolean {
  return isLoopback(request.socket.remoteAddress) && isLoopbackHost(request.headers.host);
}

/** A cookie's (URI-decoded) value from a Cookie header. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? "").split(";")) {
    const at = part.indexOf("=");
    if (at < 0 || part.slice(0, at).trim() !== name) continue;
    try {
      return decodeURIComponent(part.slice(at + 1).trim());
    } catch (error) {
      // A malformed %-escape (URIError) is no token; anything else is a bug.
      if (error instanceof URIError) return undefined;
      throw error;
    }
  }
  return undefined;
}

const IPV4_OCTET = "(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
/** `localhost`, `127.a.b.c` or `[::1]`, each with an optional `:port`; nothing else. */
const LOOPBACK_HOST = new RegExp(
  `^(?:localhost|127\\.${IPV4_OCTET}\\.${IPV4_OCTET}\\.${IPV4_OCTET}|\\[::1\\])(?::\\d{1,5})?$`,
  "i",
);

/** Whether a Host header is exactly a loopback literal or `localhost`, with an optional port. */
export function isLoopbackHost(host: string | undefined): boolean {
  return host !== undefined && LOOPBACK_HOST.test(host);
}
