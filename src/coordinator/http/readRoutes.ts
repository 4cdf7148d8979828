import type { FastifyInstance } from "fastify";
import { listAgents } from "../../ledger/agents.js";
import { resultDirErrors } from "../../ledger/resultDirErrors.js";
import type { AttemptRow } from "../../ledger/rows.js";
import { droppedTaskCount, phaseProgress, taskCounts } from "../../ledger/taskCounts.js";
import { readTaskLog } from "../taskLogs.js";
import type { AppOptions } from "./app.js";
import { HttpError } from "./app.js";
import { schemas } from "./schemas.js";

const viewer = { access: "viewer" as const };
/** A ledger slower than this to answer `SELECT 1` makes the replica unhealthy. */
const HEALTH_TIMEOUT_MS = 2000;

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/** Read-only routes: the viewer token (or the agent token) is needed, except from loopback. */
export function registerReadRoutes(api: FastifyInstance, options: AppOptions): void {
  const { db } = options.coordinator;

  // For load balancers in front of replicas: 200 only while this replica can reach its ledger.
  api.get("/health", async (_request, reply) => {
    try {
      await withTimeout(db.one("SELECT 1 AS ok"), HEALTH_TIMEOUT_MS);
      return { ok: true, time: Date.now(), store: db.dialect };
    } catch (error) {
      return reply
        .code(503)
        .send({ ok: false, error: `the ledger cannot be reached: ${(error as Error).message}` });
    }
  });

  api.get("/status", { config: viewer }, async () => ({
    ...(await taskCounts(db)),
    dropped: await droppedTaskCount(db),
    phases: await phaseProgress(db),
    resultErrors: await resultDirErrors(db),
  }));

  api.get("/agents", { config: viewer }, async () => ({
    agents: (await listAgents(db)).map(({ info_json, ...agent }) => ({
      ...agent,
      info: JSON.parse(info_json),
    })),
  }));

  api.get<{ Params: { id: string } }>(
    "/tasks/:id",
    { config: viewer, schema: { params: schemas.taskParams } },
    async (request) => {
      const task = await db.one<Record<string, unknown>>("SELECT * FROM tasks WHERE id = $1", [
        Number(request.params.id),
      ]);
      if (!task) throw new HttpError(404, `unknown task ${request.params.id}`);
      const attempts = await db.all<AttemptRow>("SELECT * FROM attempts WHERE task_id = $1 ORDER BY number", [
        task.id,
      ]);
      const placements = await db.all(
        'SELECT phase, output_dir AS "outputDir", active FROM placements WHERE task_id = $1',
        [task.id],
      );
      return { task, attempts, placements };
    },
  );

  api.get<{ Params: { id: string }; Querystring: { attempt?: string } }>(
    "/tasks/:id/log",
    { config: viewer, schema: { params: schemas.taskParams } },
    async (request, reply) => {
      const attempt = request.query.attempt === undefined ? undefined : Number(request.query.attempt);
      const log = await readTaskLog(db, options.stateDir, Number(request.params.id), attempt);
      if (!log) throw new HttpError(404, `no attempt of task ${request.params.id} yet`);
      return reply
        .header("content-type", "text/plain; charset=utf-8")
        .header("x-labsweep-attempt", String(log.attempt.number))
        .header("x-labsweep-attempt-ended", log.attempt.ended_at === null ? "0" : "1")
        .send(log.text);
    },
  );
}
