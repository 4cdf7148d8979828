import type { FastifyInstance } from "fastify";
import { HttpError } from "../../http/httpError.js";
import { listAgents } from "../../ledger/agents.js";
import { pingLedger } from "../../ledger/ping.js";
import { taskRecord } from "../../ledger/reads/attempts.js";
import { explainTask, TaskRefError } from "../../ledger/reads/explain.js";
import { statusReport } from "../statusReport.js";
import { readTaskLog } from "../taskLogs.js";
import { logRangeOf } from "./logRange.js";
import type { AppOptions } from "./options.js";
import { schemas } from "./schemas.js";

const viewer = { access: "viewer" as const };
/** A ledger slower than this to answer a trivial query (`ping`) makes the replica unhealthy. */
const HEALTH_TIMEOUT_MS = 2000;

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The report `labsweep status` prints locally (status and status --server print the same) and
 * the agents; with `serve --slurm`, both also tell how allocation goes (null without it).
 */
function registerAgentReadRoutes(api: FastifyInstance, options: AppOptions): void {
  const { db } = options.coordinator;
  const allocation = () => options.allocation?.report() ?? null;
  api.get("/status", { config: viewer }, async () => ({
    ...(await statusReport(db)),
    allocation: allocation(),
  }));
  api.get("/agents", { config: viewer }, async () => ({
    agents: (await listAgents(db)).map(({ info_json, ...agent }) => ({
      ...agent,
      info: JSON.parse(info_json),
    })),
    allocation: allocation(),
  }));
}

/** Read-only routes: the viewer token (or the agent token) is needed, except from loopback. */
export function registerReadRoutes(api: FastifyInstance, options: AppOptions): void {
  const { db } = options.coordinator;

  // For load balancers in front of replicas: 200 only while this replica can reach its ledger.
  api.get("/health", async (_request, reply) => {
    try {
      await withTimeout(pingLedger(db), HEALTH_TIMEOUT_MS);
      return { ok: true, time: Date.now(), store: db.dialect };
    } catch (error) {
      return reply
        .code(503)
        .send({ ok: false, error: `the ledger cannot be reached: ${(error as Error).message}` });
    }
  });

  registerAgentReadRoutes(api, options);

  api.get<{ Params: { id: string } }>(
    "/tasks/:id",
    { config: viewer, schema: { params: schemas.taskParams } },
    async (request) => {
      const record = await taskRecord(db, Number(request.params.id));
      if (!record) throw new HttpError(404, `unknown task ${request.params.id}`);
      return record;
    },
  );

  registerExplainRoute(api, options);

  // A log comes in pieces of at most LOG_RANGE_CAP bytes (see logRange.ts): a viewer following
  // a task must not make the server read a whole log into memory every poll.
  api.get<{
    Params: { id: string };
    Querystring: { attempt?: string; offset?: string; limit?: string };
  }>("/tasks/:id/log", { config: viewer, schema: { params: schemas.taskParams } }, async (request, reply) => {
    const { attempt: attemptText, offset, limit } = request.query;
    if (attemptText !== undefined && !/^\d{1,9}$/.test(attemptText))
      throw new HttpError(400, `attempt must be a whole number, got "${String(attemptText).slice(0, 40)}"`);
    const { range, ranged } = logRangeOf({ offset, limit }, request.headers.range);
    const attempt = attemptText === undefined ? undefined : Number(attemptText);
    const piece = await readTaskLog(db, options.stateDir, Number(request.params.id), attempt, range);
    if (!piece) throw new HttpError(404, `no attempt of task ${request.params.id} yet`);
    reply
      .header("content-type", "text/plain; charset=utf-8")
      .header("accept-ranges", "bytes")
      .header("x-labsweep-attempt", String(piece.attempt.number))
      .header("x-labsweep-attempt-ended", piece.attempt.ended_at === null ? "0" : "1")
      .header("x-labsweep-log-offset", String(piece.offset))
      .header("x-labsweep-log-size", String(piece.size));
    if (ranged) {
      if (piece.bytes.length === 0)
        return reply
          .code(416)
          .type("application/json")
          .header("content-range", `bytes */${piece.size}`)
          .send({
            error: `the log has ${piece.size} bytes: nothing in that range`,
          });
      reply
        .code(206)
        .header(
          "content-range",
          `bytes ${piece.offset}-${piece.offset + piece.bytes.length - 1}/${piece.size}`,
        );
    }
    return reply.send(piece.bytes);
  });
}

/** Why a task is not running (`labsweep explain --server`, the task page): by id, signature or its start. */
function registerExplainRoute(api: FastifyInstance, options: AppOptions): void {
  const { db } = options.coordinator;
  api.get<{ Params: { id: string } }>(
    "/tasks/:id/explain",
    { config: viewer, schema: { params: schemas.taskRef } },
    async (request) => {
      try {
        return await explainTask(db, request.params.id, options.explainSources?.() ?? {});
      } catch (error) {
        if (error instanceof TaskRefError) throw new HttpError(404, error.message);
        throw error;
      }
    },
  );
}
