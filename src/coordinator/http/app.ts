import Fastify, { type FastifyInstance } from "fastify";
import { dashboardPlugin } from "../../dashboard/routes.js";
import { accessHook } from "../../http/access.js";
import { HttpError } from "../../http/httpError.js";
import { UnknownPhaseError } from "../../ledger/knownPhase.js";
import { DashboardQueryError } from "../../ledger/reads/cursor.js";
import { logger } from "../../log/logger.js";
import { API_PREFIX, type ErrorBody, type ErrorCode, REQUEST_BODY_LIMIT_BYTES } from "../../protocol/http.js";
import { ConfigError } from "../../sweep/configError.js";
import { UnknownAgentError } from "../remoteAgents.js";
import { registerAgentRoutes } from "./agentRoutes.js";
import { registerArtifactRoutes } from "./artifactRoutes.js";
import type { AppOptions, Listening } from "./options.js";
import { registerPointRoutes } from "./pointRoutes.js";
import { registerReadRoutes } from "./readRoutes.js";

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
    // A metric name (up to 200 characters, percent-encoded up to three times that) is a path parameter.
    routerOptions: { maxParamLength: 1024 },
    ajv: { customOptions: { validateSchema: options.checkSchemas ?? false } },
    ...(options.https ? { https: options.https } : {}),
    ...(options.listening ? { serverFactory: serveOn(options.listening) } : {}),
  }) as unknown as FastifyInstance;
  const log = logger("labsweep", options.warn);

  app.addHook("onRequest", accessHook(options));
  app.setErrorHandler(
    (error: Error & { statusCode?: number; code?: string; validation?: unknown }, _request, reply) => {
      const status = error.statusCode ?? statusOf(error);
      // A 5xx raised on purpose (503: too many streams) says why; any other is a bug, kept in the log.
      if (error instanceof HttpError) return reply.code(status).send(bodyOf(error.message, error.code));
      if (error instanceof UnknownAgentError)
        return reply.code(status).send(bodyOf(error.message, "unknown_agent"));
      if (status >= 500) {
        log.warn(error.stack ?? error.message);
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
      if (options.agentApi ?? true) {
        const { agents } = options;
        if (!agents) throw new Error("the agents' routes need the agents they serve (options.agents)");
        registerAgentRoutes(api, { ...options, agents });
      }
      registerReadRoutes(api, options);
      registerPointRoutes(api, options);
      registerArtifactRoutes(api, options);
    },
    { prefix: API_PREFIX },
  );
  if (options.dashboard ?? true)
    app.register(dashboardPlugin, {
      db: options.coordinator.db,
      tokens: options.tokens,
      trustLoopback: options.trustLoopback,
      telemetry: options.telemetry,
      https: options.https !== undefined,
      localMachines: options.localMachines,
      warn: options.warn,
      maxEventStreams: options.maxEventStreams,
      streamBufferLimit: options.streamBufferLimit,
      allocation: options.allocation && (() => options.allocation?.report() ?? null),
    });
  return app;
}

/** Fastify's serverFactory for a server that is listening already: its handler goes to `route`. */
function serveOn(listening: Listening) {
  return (handler: Parameters<Listening["route"]>[0]) => {
    listening.route(handler);
    return listening.server;
  };
}

/** `{error}`, with the `code` a client branches on where there is one. */
function bodyOf(error: string, code: ErrorCode | undefined): ErrorBody {
  return code ? { error, code } : { error };
}

/** The status of an error some layer below raised for a caller to branch on; 500 for any other. */
function statusOf(error: Error): number {
  if (error instanceof UnknownAgentError) return 409;
  if (error instanceof UnknownPhaseError) return 400;
  if (error instanceof ConfigError || error instanceof DashboardQueryError) return 400;
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
