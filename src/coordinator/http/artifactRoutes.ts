import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import type { FastifyInstance, FastifyReply } from "fastify";
import { HttpError } from "../../http/httpError.js";
import { taskArtifact, taskArtifacts, taskOutputDirs, taskSignature } from "../../ledger/reads/artifacts.js";
import { artifactDir, artifactPathError } from "../../protocol/artifacts.js";
import { ArtifactStore } from "../artifactStore.js";
import type { AppOptions } from "./options.js";

const agentOnly = { access: "agent" as const };
const viewer = { access: "viewer" as const };
const ID = "^[0-9]{1,15}$";
const agentParams = {
  type: "object",
  properties: {
    agentId: { type: "string", minLength: 1, maxLength: 200 },
    attemptId: { type: "string", pattern: ID },
  },
} as const;
const taskParams = { type: "object", properties: { id: { type: "string", pattern: ID } } } as const;
const SHA256 = { type: "string", pattern: "^[0-9a-f]{64}$" } as const;
const WHOLE = { type: "string", pattern: "^[0-9]{1,16}$" } as const;

interface UploadRoute {
  Params: { agentId: string; attemptId: string; "*": string };
  Querystring: { offset: string; size: string; sha256: string };
}

/**
 * Artifacts (docs/config.md `artifacts:`): agents upload a successful attempt's files, streamed
 * and resumable — `GET …/artifacts/PATH` says how many bytes the coordinator holds, `PUT
 * …/artifacts/PATH?offset=&size=&sha256=` appends from there — and viewers list and download a
 * task's. Bodies are raw bytes (application/octet-stream), never held in memory; this module
 * registers its own parser for them, in a scope of its own.
 */
export function registerArtifactRoutes(api: FastifyInstance, options: AppOptions): void {
  const { db } = options.coordinator;
  const store = new ArtifactStore(db, options.artifactLimitBytes);
  api.register(async (scope) => {
    // The body stays a stream (request.raw): ArtifactStore writes it to disk as it comes.
    scope.addContentTypeParser("application/octet-stream", (_request, _payload, done) =>
      done(null, undefined),
    );

    if (options.agentApi ?? true) {
      scope.get<{ Params: UploadRoute["Params"]; Querystring: { size?: string; sha256?: string } }>(
        "/agents/:agentId/attempts/:attemptId/artifacts/*",
        {
          config: agentOnly,
          schema: {
            params: agentParams,
            querystring: { type: "object", properties: { size: WHOLE, sha256: SHA256 } },
          },
        },
        async (request) => {
          const { agentId, attemptId } = request.params;
          const { size, sha256 } = request.query;
          const file = { sha256, ...(size !== undefined && { size: Number(size) }) };
          return store.held(agentId, Number(attemptId), request.params["*"], file);
        },
      );

      scope.put<UploadRoute>(
        "/agents/:agentId/attempts/:attemptId/artifacts/*",
        {
          config: agentOnly,
          schema: {
            params: agentParams,
            querystring: {
              type: "object",
              required: ["offset", "size", "sha256"],
              properties: { offset: WHOLE, size: WHOLE, sha256: SHA256 },
            },
          },
        },
        async (request, reply) => {
          if (request.headers["content-type"] !== "application/octet-stream")
            throw new HttpError(415, "send the file's bytes as application/octet-stream");
          const { agentId, attemptId } = request.params;
          const { offset, size, sha256 } = request.query;
          const file = { path: request.params["*"], size: Number(size), sha256 };
          // An answer sent before the body was read must not leave the rest to be read as a request.
          reply.header("connection", "close");
          const held = await store.receive(agentId, Number(attemptId), file, Number(offset), request.raw);
          reply.removeHeader("connection");
          return held;
        },
      );
    }

    scope.get<{ Params: { id: string } }>(
      "/tasks/:id/artifacts",
      { config: viewer, schema: { params: taskParams } },
      async (request) => ({
        artifacts: (await taskArtifacts(db, Number(request.params.id))).map((row) => ({
          path: row.path,
          size: row.size,
          sha256: row.sha256,
          attemptId: row.attempt_id,
          storedAt: row.stored_at,
        })),
      }),
    );

    scope.get<{ Params: { id: string; "*": string } }>(
      "/tasks/:id/artifacts/*",
      { config: viewer, schema: { params: taskParams } },
      async (request, reply) => sendArtifact(options, Number(request.params.id), request.params["*"], reply),
    );
  });
}

/**
 * Streams a stored artifact from the first output dir holding it at its recorded size, as an
 * attachment of a type no browser renders (a task's HTML must not run on the dashboard's origin).
 */
async function sendArtifact(options: AppOptions, taskId: number, path: string, reply: FastifyReply) {
  const bad = artifactPathError(path);
  if (bad) throw new HttpError(400, `artifact path ${JSON.stringify(path.slice(0, 200))} ${bad}`);
  const { db } = options.coordinator;
  const row = await taskArtifact(db, taskId, path);
  if (!row) throw new HttpError(404, `task ${taskId} has no artifact ${JSON.stringify(path)}`);
  const signature = await taskSignature(db, taskId);
  for (const outputDir of await taskOutputDirs(db, taskId)) {
    const file = join(artifactDir(outputDir, signature), ...path.split("/"));
    const size = await stat(file).then(
      (s) => (s.isFile() ? s.size : -1),
      () => -1,
    );
    if (size !== row.size) continue;
    const name = path.split("/").pop() ?? "artifact";
    return reply
      .header("content-type", "application/octet-stream")
      .header("x-content-type-options", "nosniff")
      .header("content-security-policy", "sandbox")
      .header("content-length", String(size))
      .header("x-labsweep-sha256", row.sha256)
      .header(
        "content-disposition",
        `attachment; filename="${asciiName(name)}"; filename*=UTF-8''${encodeURIComponent(name)}`,
      )
      .send(createReadStream(file));
  }
  throw new HttpError(
    404,
    `artifact ${JSON.stringify(path)} of task ${taskId} is missing from its output dirs (labsweep verify)`,
  );
}

/** A file name safe inside a quoted header value: ASCII letters, digits and `._-` kept. */
function asciiName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, "_");
}
