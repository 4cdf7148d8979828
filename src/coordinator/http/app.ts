import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { API_PREFIX, REQUEST_BODY_LIMIT_BYTES } from "../../api/contract.js";
import type { LocalMachine } from "../../dashboard/machines.js";
import type { Coordinator } from "../coordinator.js";
import type { GpuTelemetry } from "../gpuTelemetry.js";
import type { RemoteAgents } from "../remoteAgents.js";
import { bearerToken, isLoopback, type Tokens, tokenMatches } from "../tokens.js";
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
  addConfigs?: (files: Array<{ path: string; text: string }>) => Promise<unknown>;
  /** Server-side errors (never sent to clients in detail). (Default: stderr) */
  warn?: (message: string) => void;
  /** Recent GPU readings per agent, which the dashboard plots. */
  telemetry: GpuTelemetry;
  /** Serve the dashboard at `/` and its API under /api/v1/dashboard. (Default: true) */
  dashboard?: boolean;
  /** Machines working in this process (`labsweep run`'s), shown beside registered agents. (Default: none) */
  localMachines?: () => LocalMachine[];
  /** Offer the agents' routes (lease, report, cancel, add, retry). (Default: true) */
  agentApi?: boolean;
}

/**
 * Who may call a route: agents (the agent token), or readers (the viewer token, or loopback).
 * The dashboard's routes also take the viewer token from its HttpOnly cookie, and exempt loopback
 * only when the Host header names this machine too (a DNS-rebinding page names its own host).
 */
export type Access = "agent" | "viewer" | "dashboard";

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
    if (!allowed(access, request, options.tokens)) {
      await reply.code(401).send({ error: "missing or wrong token (Authorization: Bearer <token>)" });
    }
  });
  app.setErrorHandler(
    (error: Error & { statusCode?: number; code?: string; validation?: unknown }, _request, reply) => {
      const status = error.statusCode ?? statusOf(error);
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

/** The cookie that carries the viewer token for browsers (HttpOnly, SameSite=Strict). */
export const VIEWER_COOKIE = "labsweep_viewer";

/** Whether a request may call a route of this access kind. */
export function allowed(access: Access, request: FastifyRequest, tokens: Tokens): boolean {
  const token = bearerToken(request.headers.authorization);
  if (tokenMatches(token, tokens.agent)) return true;
  if (access === "agent") return false;
  if (tokenMatches(token, tokens.viewer)) return true;
  if (access === "viewer") return isLoopback(request.socket.remoteAddress);
  return (
    tokenMatches(cookieValue(request.headers.cookie, VIEWER_COOKIE), tokens.viewer) ||
    (isLoopback(request.socket.remoteAddress) && isLoopbackHost(request.headers.host))
  );
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

/** Whether a Host header names this machine's loopback (localhost, 127.x.x.x, [::1]). */
export function isLoopbackHost(host: string | undefined): boolean {
  if (!host) return false;
  const name = host.startsWith("[") ? host.slice(1, host.indexOf("]")) : host.replace(/:\d+$/, "");
  const lower = name.toLowerCase();
  return lower === "localhost" || lower.endsWith(".localhost") || isLoopback(lower);
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
