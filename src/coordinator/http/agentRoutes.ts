import type { FastifyInstance } from "fastify";
import { openEventStream } from "../../http/eventStream.js";
import { HttpError } from "../../http/httpError.js";
import type { FinishResult } from "../../ledger/finishAttempt.js";
import type { FinishRefusal } from "../../ledger/finishAttempts.js";
import { pausePhases } from "../../ledger/pausePhases.js";
import { attemptById } from "../../ledger/reads/attempts.js";
import { recordAttemptProcess } from "../../ledger/recoverAbandoned.js";
import type { AttemptRow } from "../../ledger/rows.js";
import { artifactPathError } from "../../protocol/artifacts.js";
import type { Capacity } from "../../protocol/capacity.js";
import type {
  FinishRequest,
  GoodbyeRequest,
  HeartbeatRequest,
  LeaseRequest,
  LogChunkRequest,
  RegisterRequest,
  ReportVerdict,
  StartedRequest,
} from "../../protocol/http.js";
import { appendLogChunk, logPathOf } from "../taskLogs.js";
import type { AgentAppOptions } from "./options.js";
import { schemas } from "./schemas.js";

const agentOnly = { access: "agent" as const };
/** Changing the sweep is the admin's: a compute node's agent token must not queue commands. */
const adminOnly = { access: "admin" as const };

/**
 * Routes agents call: register, lease (long-poll), heartbeat, report, stream logs, hold a channel;
 * and the admin's: cancel, add configs, retry, pause, resume.
 */
export function registerAgentRoutes(api: FastifyInstance, options: AgentAppOptions): void {
  registerPresenceRoutes(api, options);
  registerLeaseRoute(api, options);
  registerAttemptRoutes(api, options);
  registerAdminRoutes(api, options);
}

/** An agent's presence: register, heartbeat, hold a channel, say goodbye. */
function registerPresenceRoutes(api: FastifyInstance, options: AgentAppOptions): void {
  const { coordinator, agents } = options;

  api.post<{ Body: RegisterRequest }>(
    "/agents",
    { config: agentOnly, schema: { body: schemas.register } },
    async (request) => {
      const openAttempts = await agents.register(request.body);
      return {
        leaseMs: coordinator.leaseMs,
        heartbeatMs: Math.max(250, Math.floor(coordinator.leaseMs / 4)),
        openAttempts,
      };
    },
  );

  api.post<{ Body: HeartbeatRequest }>(
    "/heartbeat",
    { config: agentOnly, schema: { body: schemas.heartbeat } },
    async (request) => {
      const { agentId, attemptIds, gpus } = request.body;
      const stale = await agents.heartbeat(agentId, attemptIds);
      if (gpus) options.telemetry.record(agentId, Date.now(), gpus);
      return { stale };
    },
  );

  api.post<{ Body: GoodbyeRequest }>(
    "/goodbye",
    { config: agentOnly, schema: { body: schemas.goodbye } },
    async (request) => {
      await agents.goodbye(request.body.agentId);
      return { ok: true };
    },
  );

  api.get<{ Querystring: { agentId: string } }>(
    "/channel",
    { config: agentOnly, schema: { querystring: schemas.channelQuery } },
    async (request, reply) => {
      if (!(await agents.known(request.query.agentId)))
        throw new HttpError(409, "unknown agent: register first", "unknown_agent");
      const raw = openEventStream(reply);
      const send = (event: object): void => {
        raw.write(`data: ${JSON.stringify(event)}\n\n`);
      };
      send({ type: "hello", serverTime: Date.now() });
      const keepAlive = setInterval(() => raw.write(": keep-alive\n\n"), 15_000);
      const disconnect = agents.connect(request.query.agentId, send);
      raw.once("close", () => {
        clearInterval(keepAlive);
        disconnect();
      });
    },
  );
}

/** POST /lease: carried reports first, then leases (long-poll). */
function registerLeaseRoute(api: FastifyInstance, options: AgentAppOptions): void {
  const { coordinator, agents } = options;

  api.post<{ Body: LeaseRequest }>(
    "/lease",
    { config: agentOnly, schema: { body: schemas.lease } },
    async (request, reply) => {
      let gone = false;
      reply.raw.once("close", () => {
        if (reply.raw.writableFinished) return;
        gone = true;
        // Wake the held request so it ends now instead of holding its wait to the end.
        coordinator.notifyWork();
      });
      const { agentId, reports = [], max = 1 } = request.body;
      const capacity = normaliseCapacity(request.body.capacity);
      // Reports first, in the transaction of the first lease: a task whose report arrives here is
      // settled before anything is leased. A report about an unknown attempt or another agent's
      // is refused (as POST /attempts/:id/finish would refuse it) without stopping the others.
      const answer = await agents.lease(
        agentId,
        capacity,
        request.body.waitMs,
        () => gone,
        max,
        reports.map(({ attemptId, outcome, logTail }) => ({
          attemptId,
          report: { outcome, logTail },
          worker: agentId,
        })),
      );
      const verdicts = reports.map(({ attemptId }, i) => verdictOf(attemptId, answer.results[i]));
      // `lease` is for callers that lease one at a time; a batch caller reads `leases` only, and
      // sending its first task twice would cost every batch a task's worth of JSON.
      const first = request.body.max === undefined ? (answer.leases[0] ?? null) : null;
      const unfit = answer.unfit && answer.unfit.length > 0 ? { unfit: answer.unfit } : {};
      return { lease: first, leases: answer.leases, done: answer.done, reports: verdicts, ...unfit };
    },
  );
}

/** What an agent tells of an attempt it runs: started, its log, its finish. */
function registerAttemptRoutes(api: FastifyInstance, options: AgentAppOptions): void {
  const { coordinator } = options;

  api.post<{ Body: StartedRequest; Params: { id: string } }>(
    "/attempts/:id/started",
    { config: agentOnly, schema: { body: schemas.started, params: schemas.attemptParams } },
    async (request) => {
      const attempt = await attemptOf(options, request.params.id, request.body.agentId);
      // The log a remote agent streams lives in this coordinator's state dir (see appendLogChunk):
      // record that path, never "", or `GET /tasks/:id/log` would read nothing.
      await recordAttemptProcess(
        coordinator.db,
        attempt.id,
        request.body.pid,
        logPathOf(options.stateDir, attempt),
      );
      return { ok: true };
    },
  );

  api.post<{ Body: FinishRequest; Params: { id: string } }>(
    "/attempts/:id/finish",
    { config: agentOnly, schema: { body: schemas.finish, params: schemas.attemptParams } },
    async (request) => {
      const { outcome, logTail, artifacts } = request.body;
      checkDeclared(artifacts);
      const attempt = await attemptOf(options, request.params.id, request.body.agentId);
      const result = await coordinator.finish(attempt.id, { outcome, logTail, artifacts });
      return { accepted: result.taskState !== "ignored", taskState: result.taskState };
    },
  );

  api.post<{ Body: LogChunkRequest; Params: { id: string } }>(
    "/attempts/:id/log",
    { config: agentOnly, schema: { body: schemas.log, params: schemas.attemptParams } },
    async (request) => {
      const attempt = await attemptOf(options, request.params.id, request.body.agentId);
      await appendLogChunk(options.stateDir, attempt, request.body.offset, request.body.text);
      return { ok: true };
    },
  );
}

/** The admin's: cancel, add configs, retry, pause and resume. */
function registerAdminRoutes(api: FastifyInstance, options: AgentAppOptions): void {
  const { coordinator, agents } = options;

  api.post<{ Body: { taskIds?: number[]; phase?: string } }>(
    "/cancel",
    { config: adminOnly, schema: { body: schemas.cancel } },
    async (request) => {
      const cancelled = await coordinator.cancel(request.body);
      for (const { worker, attemptId } of cancelled.running)
        agents.push(worker, { type: "cancel", attemptIds: [attemptId] });
      return { cancelled: cancelled.tasks };
    },
  );

  api.post<{ Body: { files: Array<{ path: string; text: string }>; yes?: boolean } }>(
    "/configs",
    { config: adminOnly, schema: { body: schemas.configs } },
    async (request) => {
      if (!options.addConfigs)
        throw new HttpError(404, "this coordinator serves no sweep that can be extended", "not_extendable");
      return options.addConfigs(request.body.files, { yes: request.body.yes ?? false });
    },
  );

  api.post<{ Body: { phase?: string } }>(
    "/retry",
    { config: adminOnly, schema: { body: schemas.retry } },
    async (request) => {
      return { retried: await coordinator.retryFailed(request.body.phase) };
    },
  );

  // Running tasks finish; a paused phase starts nothing new until resumed.
  for (const [path, paused] of [
    ["/pause", true],
    ["/resume", false],
  ] as const) {
    api.post<{ Body: { phase?: string } }>(
      path,
      { config: adminOnly, schema: { body: schemas.pause } },
      async (request) => {
        const phases = await pausePhases(coordinator.db, paused, Date.now(), { phase: request.body.phase });
        // Agents waiting for work hear of the resumed phases now, not at their next lease.
        if (!paused && phases.length > 0) coordinator.notifyWork();
        return { phases };
      },
    );
  }

  // `labsweep slurm --resume-alloc` (or the dashboard's button): allocation goes on after failures.
  api.post("/slurm/resume", { config: adminOnly }, async () => {
    if (!options.allocation)
      throw new HttpError(
        409,
        "this coordinator submits no SLURM jobs: start it with serve --slurm",
        "no_allocation",
      );
    options.allocation.resume();
    return options.allocation.report();
  });
}

/**
 * A 400 naming the first declared artifact whose path no store would take. A report without the
 * list (an agent from before it) declares nothing: its success is recorded as before, and the
 * files beside it are still one attempt's — its own, as far as another attempt's upload left
 * them — because a recorded success removes every other attempt's (finishAttempt). What such a
 * report cannot prove is that none of its own files was superseded: it may be recorded with
 * fewer files than it uploaded, never with another attempt's.
 */
function checkDeclared(artifacts: FinishRequest["artifacts"]): void {
  for (const [i, file] of (artifacts ?? []).entries()) {
    const bad = artifactPathError(file.path);
    if (bad)
      throw new HttpError(
        400,
        `invalid request: artifacts[${i}].path ${JSON.stringify(file.path.slice(0, 200))} ${bad}`,
      );
  }
}

/** What the agent hears of one carried report: the errors attemptOf gives POST /attempts/:id/finish. */
function verdictOf(attemptId: number, result: FinishResult | FinishRefusal | undefined): ReportVerdict {
  if (result && "refused" in result)
    return {
      attemptId,
      error:
        result.refused === "unknown"
          ? `404: unknown attempt ${attemptId}`
          : `409: attempt ${attemptId} belongs to another agent`,
    };
  return { attemptId, accepted: result !== undefined && result.taskState !== "ignored" };
}

/** The attempt an agent names, which must be its own. */
async function attemptOf(options: AgentAppOptions, id: string, agentId: string): Promise<AttemptRow> {
  const attempt = await attemptById(options.coordinator.db, Number(id));
  if (!attempt) throw new HttpError(404, `unknown attempt ${id}`, "unknown_attempt");
  if (attempt.worker !== agentId)
    throw new HttpError(409, `attempt ${id} belongs to another agent`, "foreign_attempt");
  options.agents.heard(agentId);
  return attempt;
}

/** JSON has no Infinity: an agent with no CPU limit sends null. Agents older than tags send none. */
function normaliseCapacity(capacity: LeaseRequest["capacity"]): Capacity {
  return { ...capacity, freeCpus: capacity.freeCpus ?? Number.POSITIVE_INFINITY, tags: capacity.tags ?? [] };
}
