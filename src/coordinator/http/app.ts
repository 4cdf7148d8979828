import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { LocalMachine } from "../../dashboard/machines.js";
import { API_PREFIX, REQUEST_BODY_LIMIT_BYTES } from "../../protocol/http.js";
import type { Coordinator } from "../coordinator.js";
import type { GpuTelemetry } from "../gpuTelemetry.js";
import type { RemoteAgents } from "../remoteAgents.js";
import { bearerToken, isLoopback, type Tokens, tokenMatches, viewerCookieValue } from "../tokens.js";
import { registerAgentRoutes } from "./agentRoutes.js";
import { registerDashboardRoutes } from "./dashboardRoutes.js";
import { registerReadRoutes } from "./readRoutes.js";

export interface AppOptions {
  coordinator: Coordinator;
  agents: RemoteAgents;
  tokens: Tokens;
  stateDir: string;
  /** Largest request body accepted; larger ones get 413. (Default: 1 MiB) */
  bodyLimit?: number;
  /** Serve HTTPS with this key and certificate (PEM). (Default: plain HTTP) */
  https?: { key: Buffer; cert: Buffer };
  /** Adds config files to the running sweep (`labsweep add`). (Default: not offered) */
  addConfigs?: (files: Array<{ path: string; text: string }>, options?: AddOptions) => Promise<unknown>;
  /** Server-side errors (never sent to clients in detail). (Default: stderr) */
  warn?: (message: string) => void;
  /** Recent GPU readings per agent, which the dashboard plots. */
  telemetry: GpuTelemetry;
  /** Serve the dashboard at `/` and its API under /api/v1/dashboard. (Default: true) */
  dashboard?: boolean;
  /** Machines working in this process (`labsweep run`'s), shown beside registered agents. (Default: none) */
  localMachines?: () => LocalMachine[];
  /** Offer the agents' routes (lease, report) and the admin's (cancel, add, retry). (Default: true) */
  agentApi?: boolean;
  /**
   * Reads need no token from a loopback peer whose Host header is a loopback literal or
   * `localhost` (`labsweep run`; `serve --trust-loopback`). (Default: false, a token always)
   */
  trustLoopback?: boolean;
  /** Dashboard event streams open at once; the next one gets 503. (Default: 64) */
  maxEventStreams?: number;
  /** Bytes an event stream may have waiting for a client that does not read; past it, dropped. (Default: 1 MiB) */
  streamBufferLimit?: number;
}

/** What `labsweep add` asks for besides its files. */
export interface AddOptions {
  /** Accept a sweep over the large-grid limit (`labsweep add --yes`). (Default: false) */
  yes?: boolean;
}

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

/**
 * The coordinator's HTTP API. Every body is validated against a schema, bodies are size-capped,
 * every route needs a token (reads from loopback excepted), and every error — malformed JSON,
 * a wrong token, an unknown attempt — is one JSON `{error}` with its status: input never crashes
 * the server.
 */
export function buildApp(options: AppOptions): FastifyInstance {
  const app = Fastify({
    logger: false,
    bodyLimit: options.bodyLimit ?? REQUEST_BODY_LIMIT_BYTES,
    forceCloseConnections: true,
    ...(options.https ? { https: options.https } : {}),
  }) as unknown as FastifyInstance;
  const warn = options.warn ?? ((message: string) => process.stderr.write(`${message}\n`));

  app.addHook("onRequest", async (request, reply) => {
    const access = request.routeOptions.config.access;
    if (!access) return;
    if (!allowed(access, request, options)) {
      await reply.code(401).send({
        error: `missing or wrong token: this needs the ${access} token (Authorization: Bearer <token>)`,
      });
    }
  });
  app.setErrorHandler(
    (error: Error & { statusCode?: number; code?: string; validation?: unknown }, _request, reply) => {
      const status = error.statusCode ?? statusOf(error);
      // A 5xx raised on purpose (503: too many streams) says why; any other is a bug, kept in the log.
      if (error instanceof HttpError) return reply.code(status).send({ error: error.message });
      if (status >= 500) {
        warn(`labsweep: ${error.stack ?? error.message}`);
        return reply.code(500).send({ error: "internal error in the coordinator (see its log)" });
      }
      return reply.code(status).send({ error: messageOf(error) });
    },
  );
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ error: `no such endpoint: ${request.method} ${request.url}` }),
  );

  app.register(
    async (api) => {
      if (options.agentApi ?? true) registerAgentRoutes(api, options);
      registerReadRoutes(api, options);
    },
    { prefix: API_PREFIX },
  );
  if (options.dashboard ?? true) registerDashboardRoutes(app, options);
  return app;
}

/** The dashboard's cookie (HttpOnly, SameSite=Strict): a digest of the viewer token, not the token. */
export const VIEWER_COOKIE = "labsweep_viewer";

/** Whether a request may call a route of this access kind. */
export function allowed(
  access: Access,
  request: FastifyRequest,
  options: Pick<AppOptions, "tokens" | "trustLoopback">,
): boolean {
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

/** Errors the coordinator raises on purpose, mapped to HTTP statuses. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

function statusOf(error: { name?: string }): number {
  if (error.name === "UnknownAgentError") return 409;
  if (error.name === "UnknownPhaseError") return 400;
  if (error.name === "ConfigError" || error.name === "DashboardQueryError") return 400;
  return 500;
}

function messageOf(error: Error & { code?: string; validation?: unknown }): string {
  if (error.code === "FST_ERR_CTP_BODY_TOO_LARGE") return "request body too large";
  if (error.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") return "send JSON (Content-Type: application/json)";
  if (error.code === "FST_ERR_CTP_EMPTY_JSON_BODY") return "empty JSON body";
  if (error.validation) return `invalid request: ${error.message}`;
  if (error instanceof SyntaxError || error.code === "FST_ERR_CTP_INVALID_JSON_BODY")
    return `malformed JSON: ${error.message}`;
  return error.message;
}

/** Sends a JSON error with a status; for handlers. */
export function fail(reply: FastifyReply, status: number, message: string): FastifyReply {
  return reply.code(status).send({ error: message });
}
