import type { FastifyInstance } from "fastify";
import { HttpError } from "../../http/httpError.js";
import { assertKnownPhase } from "../../ledger/knownPhase.js";
import { metricNames, seriesAcrossTasks, taskSeries } from "../../ledger/reads/series.js";
import { recordPoints } from "../../ledger/recordPoints.js";
import type {
  MetricNamesResponse,
  MetricSeriesResponse,
  PointsRequest,
  PointsResponse,
  TaskMetricsResponse,
} from "../../protocol/http.js";
import { MAX_METRIC_NAME_CHARS, MAX_SERIES_PER_TASK } from "../../protocol/points.js";
import type { AppOptions } from "./options.js";
import { schemas } from "./schemas.js";

const agentOnly = { access: "agent" as const };
const viewer = { access: "viewer" as const };

/** Points one request may carry, all attempts together: the body limit binds first in practice. */
const MAX_POINTS_PER_REQUEST = 20_000;

// size: declarative table
const pointsBody = {
  type: "object",
  required: ["attempts"],
  additionalProperties: false,
  properties: {
    attempts: {
      type: "array",
      maxItems: 1000,
      items: {
        type: "object",
        required: ["attemptId", "points"],
        additionalProperties: false,
        properties: {
          attemptId: { type: "integer", minimum: 1 },
          points: {
            type: "array",
            maxItems: MAX_POINTS_PER_REQUEST,
            items: {
              type: "object",
              required: ["step", "time", "metrics"],
              additionalProperties: false,
              properties: {
                step: { type: "integer", minimum: 0 },
                time: { type: "number" },
                metrics: {
                  type: "object",
                  maxProperties: MAX_SERIES_PER_TASK,
                  propertyNames: { maxLength: MAX_METRIC_NAME_CHARS },
                  additionalProperties: { type: "number" },
                },
              },
            },
          },
        },
      },
    },
  },
};

const agentParams = {
  type: "object",
  properties: { agentId: { type: "string", minLength: 1, maxLength: 200 } },
};
const nameParams = {
  type: "object",
  properties: { name: { type: "string", minLength: 1, maxLength: MAX_METRIC_NAME_CHARS } },
};
const phaseQuery = {
  type: "object",
  additionalProperties: false,
  properties: { phase: { type: "string", minLength: 1, maxLength: 200 } },
};

/**
 * Live metrics: agents relay points (`POST /agents/:agentId/points`, agent token); viewers read
 * a task's series (`GET /tasks/:id/metrics`), the metric names that have series
 * (`GET /metrics`) and one metric across tasks (`GET /metrics/:name/series`), for the dashboard.
 */
export function registerPointRoutes(api: FastifyInstance, options: AppOptions): void {
  const { db } = options.coordinator;

  if (options.agentApi ?? true)
    api.post<{ Body: PointsRequest; Params: { agentId: string } }>(
      "/agents/:agentId/points",
      { config: agentOnly, schema: { body: pointsBody, params: agentParams } },
      async (request): Promise<PointsResponse> => {
        const { stored, dropped } = await recordPoints(db, request.body.attempts, request.params.agentId);
        return { stored, dropped };
      },
    );

  api.get<{ Params: { id: string } }>(
    "/tasks/:id/metrics",
    { config: viewer, schema: { params: schemas.taskParams } },
    async (request): Promise<TaskMetricsResponse> => {
      const taskId = Number(request.params.id);
      const series = await taskSeries(db, taskId);
      if (!series) throw new HttpError(404, `unknown task ${request.params.id}`);
      return { taskId, series };
    },
  );

  api.get<{ Querystring: { phase?: string } }>(
    "/metrics",
    { config: viewer, schema: { querystring: phaseQuery } },
    async (request): Promise<MetricNamesResponse> => {
      const { phase } = request.query;
      if (phase !== undefined) await assertKnownPhase(db, phase);
      return { names: await metricNames(db, phase) };
    },
  );

  api.get<{ Params: { name: string }; Querystring: { phase?: string } }>(
    "/metrics/:name/series",
    { config: viewer, schema: { params: nameParams, querystring: phaseQuery } },
    async (request): Promise<MetricSeriesResponse> => {
      const { phase } = request.query;
      if (phase !== undefined) await assertKnownPhase(db, phase);
      const across = await seriesAcrossTasks(db, request.params.name, phase);
      if (across.tasks.length === 0)
        throw new HttpError(
          404,
          `no task has a series of metric ${JSON.stringify(request.params.name)}${phase === undefined ? "" : ` in phase ${phase}`}`,
        );
      return across;
    },
  );
}
