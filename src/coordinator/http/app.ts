import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { API_PREFIX } from "../../api/contract.js";
import type { Coordinator } from "../coordinator.js";
import type { RemoteAgents } from "../remoteAgents.js";
import { bearerToken, isLoopback, type Tokens, tokenMatches } from "../tokens.js";
import { registerAgentRoutes } from "./agentRoutes.js";
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
}

/** Who may call a route: agents (the agent token), or readers (the viewer token, or loopback). */
export type Access = "agent" | "viewer";

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
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
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
      registerAgentRoutes(api, options);
      registerReadRoutes(api, options);
    },
    { prefix: API_PREFIX },
  );
  return app;
}

function allowed(access: Access, request: FastifyRequest, tokens: Tokens): boolean {
  const token = bearerToken(request.headers.authorization);
  if (tokenMatches(token, tokens.agent)) return true;
  if (access === "agent") return false;
  return tokenMatches(token, tokens.viewer) || isLoopback(request.socket.remoteAddress);
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
  if (error.name === "ConfigError") return 400;
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
