import { Readable } from "node:stream";
import { stringify } from "csv-stringify/sync";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { type AccessOptions, allowed, VIEWER_COOKIE } from "../http/access.js";
import { HttpError } from "../http/httpError.js";
import { tokenMatches, viewerCookieValue } from "../http/tokens.js";
import type { Db } from "../ledger/db.js";
import { DashboardQueryError } from "../ledger/reads/cursor.js";
import { PlotCache, type PlotQuery, plotRows } from "../ledger/reads/plot.js";
import { resultFields, resultsPage } from "../ledger/reads/results.js";
import { runningSeriesMarks } from "../ledger/reads/series.js";
import { taskDetail } from "../ledger/reads/taskDetail.js";
import { TASK_SORTS, type TaskQuery, type TaskSort, taskPage } from "../ledger/reads/tasks.js";
import { logger, warnOnStderr } from "../log/logger.js";
import { API_PREFIX } from "../protocol/http.js";
import type { TaskState } from "../protocol/interfaces.js";
import { metricColumns, paramColumnsOf, reservedColumns } from "../results/columns.js";
import { formatCell } from "../results/csvFile.js";
import type { AllocationReport } from "../slurm/allocator.js";
import type { GpuTelemetry } from "../telemetry/gpuTelemetry.js";
import { loadAssets } from "./assets.js";
import { EventStreams } from "./eventStreams.js";
import { LiveOverview } from "./liveOverview.js";
import { type LocalMachine, listMachines, workingSlots } from "./machines.js";
import { registerSummaryRoute } from "./summaryRoute.js";

/** What the dashboard needs from the server that mounts it; it imports nothing back from there. */
export interface DashboardOptions extends AccessOptions {
  /** The ledger it reads. */
  db: Db;
  /** Recent GPU readings per agent, which it plots. */
  telemetry: GpuTelemetry;
  /** The server speaks HTTPS: the viewer cookie is marked Secure. (Default: false) */
  https?: boolean;
  /** Machines working in this process (`labsweep run`'s), shown beside registered agents. (Default: none) */
  localMachines?: () => LocalMachine[];
  /** Server-side errors. (Default: stderr) */
  warn?: (message: string) => void;
  /** `serve --slurm`'s allocations, shown with the machines. (Default: none) */
  allocation?: () => AllocationReport | null;
  /** Event streams open at once; the next one gets 503. (Default: 64) */
  maxEventStreams?: number;
  /** Bytes an event stream may have waiting for a client that does not read; past it, dropped. (Default: 1 MiB) */
  streamBufferLimit?: number;
}

const dashboard = { access: "viewer" as const };

/** The page's own policy: nothing from elsewhere, no inline script, no framing. */
const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};

type Query = Record<string, string | string[] | undefined>;

/**
 * The dashboard: the page at `/` with its assets, and its JSON under /api/v1/dashboard — an
 * overview, machines, the task table and a task's page, results, the summary over seeds and plots
 * (with CSV export), and a server-sent event stream that pushes a new overview whenever the
 * ledger changes.
 */
export async function dashboardPlugin(app: FastifyInstance, options: DashboardOptions): Promise<void> {
  const { db } = options;
  const { page, assets } = loadAssets();
  const local = options.localMachines ?? (() => []);
  const warn = options.warn ?? warnOnStderr;
  const plots = new PlotCache(db);
  const live = new LiveOverview(db, { slots: () => workingSlots(db, local()), warn });
  let closing = false;
  const machines = async () => ({
    at: Date.now(),
    machines: await listMachines(db, options.telemetry, local()),
    allocation: options.allocation?.() ?? null,
  });
  const limits = {
    maxStreams: options.maxEventStreams ?? 64,
    bufferLimit: options.streamBufferLimit ?? 1024 * 1024,
  };
  const streams = new EventStreams(live, machines, { ...limits, warn }, () => runningSeriesMarks(db));

  // The first overview of a large ledger costs a scan: do it before the first visitor asks.
  app.addHook("onReady", async () => {
    setImmediate(() => {
      if (closing) return;
      void live
        .refresh()
        .catch((error: Error) => logger("labsweep", warn).warn(`dashboard: ${error.message}`));
    });
  });
  app.addHook("preClose", async () => {
    closing = true;
    streams.close();
    await live.close();
  });

  app.get<{ Querystring: { token?: string } }>("/", async (request, reply) => {
    reply.headers(SECURITY_HEADERS).header("cache-control", "no-store");
    const given = request.query.token;
    if (given !== undefined) {
      // A link with the token sets an HttpOnly cookie (a digest of the token, not the token),
      // then leaves the URL at once, so the token is in no page, script, history entry or Referer.
      if (!tokenMatches(given, options.tokens.viewer))
        return denied(request, reply, "the link's token is not this coordinator's viewer token");
      const secure = options.https ? "; Secure" : "";
      return reply
        .code(303)
        .header(
          "set-cookie",
          `${VIEWER_COOKIE}=${viewerCookieValue(options.tokens.viewer)}; HttpOnly; SameSite=Strict; Path=/${secure}`,
        )
        .header("location", "/")
        .send();
    }
    if (!allowed("viewer", request, options))
      return denied(request, reply, "this dashboard needs the viewer token");
    return reply.type(page.type).send(page.body);
  });

  app.get<{ Params: { "*": string } }>("/assets/*", { config: dashboard }, async (request, reply) => {
    const asset = assets.get(request.params["*"]);
    if (!asset) throw new HttpError(404, `no such asset: ${request.params["*"]}`);
    return reply
      .headers(SECURITY_HEADERS)
      .header("cache-control", "no-cache")
      .type(asset.type)
      .send(asset.body);
  });

  app.register(
    async (api) => {
      registerDataRoutes(api, { db, plots, live, machines });
      registerSummaryRoute(api, db);
      api.get("/events", { config: dashboard }, async (_request, reply) => streams.open(reply));
    },
    { prefix: `${API_PREFIX}/dashboard` },
  );
}

/** What the dashboard's JSON and CSV routes read. */
interface DataSources {
  db: Db;
  plots: PlotCache;
  live: LiveOverview;
  machines: () => Promise<unknown>;
}

/** The JSON and CSV under /api/v1/dashboard: overview, machines, tasks, results and plots. */
function registerDataRoutes(api: FastifyInstance, { db, plots, live, machines }: DataSources): void {
  api.get("/overview", { config: dashboard }, async () => live.current());

  api.get("/machines", { config: dashboard }, async () => machines());

  api.get<{ Querystring: Query }>("/tasks", { config: dashboard }, async (request) => {
    const { overview, fresh } = await live.peek();
    return taskPage(db, taskQuery(request.query), overview, fresh);
  });

  api.get<{ Params: { id: string } }>("/tasks/:id", { config: dashboard }, async (request) => {
    const id = Number(request.params.id);
    if (!Number.isSafeInteger(id) || id < 1) throw new HttpError(400, "a task id is a positive whole number");
    const detail = await taskDetail(db, id);
    if (!detail) throw new HttpError(404, `unknown task ${id}`);
    return detail;
  });

  api.get("/fields", { config: dashboard }, async () => resultFields(db));

  api.get<{ Querystring: Query }>("/results", { config: dashboard }, async (request) =>
    resultsPage(db, {
      phase: text(request.query, "phase"),
      after: text(request.query, "after"),
      limit: number(request.query, "limit"),
    }),
  );

  api.get<{ Querystring: Query }>("/plot", { config: dashboard }, async (request) =>
    plots.plot(plotQuery(request.query)),
  );

  api.get<{ Querystring: Query }>("/plot.csv", { config: dashboard }, async (request, reply) => {
    const query = plotQuery(request.query);
    const { header, rows } = plotRows(await plots.plot(query));
    return csvReply(
      reply,
      `${query.y}-by-${query.x}.csv`,
      stringify([header, ...rows.map((row) => row.map(formatCell))]),
    );
  });

  api.get<{ Querystring: Query }>("/results.csv", { config: dashboard }, async (request, reply) => {
    const phase = text(request.query, "phase");
    const fields = await resultFields(db);
    const params = fields.params.map((param) => param.name);
    // Named as in final_results.csv (columns.ts), so no header holds a name twice: a metric
    // named like a column written here is `metric_NAME`, a parameter named like a leading one
    // `param_NAME`, and a parameter named wall_seconds takes that column's place.
    const leading = ["task_id", "phase"];
    const paramColumns = paramColumnsOf(params, leading);
    const metricNames = metricColumns(fields.metrics, reservedColumns(paramColumns.values(), leading));
    const wall = params.includes("wall_seconds") ? [] : ["wall_seconds"];
    const header = [
      ...leading,
      ...paramColumns.values(),
      ...fields.metrics.map((name) => metricNames.get(name) as string),
      ...wall,
    ];
    // Streamed a thousand rows at a time: a million results never sit in memory as one text.
    async function* csv(): AsyncGenerator<string> {
      yield stringify([header]);
      for (let after: string | undefined; ; ) {
        const chunk = await resultsPage(db, { phase, after, limit: 1000 });
        yield stringify(
          chunk.rows.map((row) => [
            row.id,
            row.phase,
            ...params.map((name) => formatCell(row.params[name])),
            ...fields.metrics.map((name) => formatCell(row.metrics[name])),
            ...wall.map(() => formatCell(row.wallSeconds)),
          ]),
        );
        if (!chunk.next) return;
        after = chunk.next;
      }
    }
    return csvReply(reply, "results.csv", Readable.from(csv()));
  });
}

function csvReply(reply: FastifyReply, filename: string, body: string | Readable): FastifyReply {
  const safe = filename.replace(/[^\w.-]+/g, "_");
  return reply
    .type("text/csv; charset=utf-8")
    .header("content-disposition", `attachment; filename="${safe}"`)
    .send(body);
}

function text(query: Query, name: string): string | undefined {
  const value = query[name];
  const first = Array.isArray(value) ? value[0] : value;
  return first === undefined || first === "" ? undefined : first;
}

function number(query: Query, name: string): number | undefined {
  const value = text(query, name);
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isFinite(parsed)) throw new DashboardQueryError(`${name} must be a number, got "${value}"`);
  return parsed;
}

/** `state`, `phase`, `q` (text), `p.<param>=<value>` (repeatable), `sort`, `dir`, `limit`, `after`. */
function taskQuery(query: Query): TaskQuery {
  const sort = text(query, "sort") ?? "id";
  if (!(TASK_SORTS as readonly string[]).includes(sort))
    throw new DashboardQueryError(`sort must be one of ${TASK_SORTS.join(", ")}`);
  const dir = text(query, "dir") ?? "asc";
  if (dir !== "asc" && dir !== "desc") throw new DashboardQueryError("dir must be asc or desc");
  const params: Array<{ key: string; value: string }> = [];
  for (const [name, value] of Object.entries(query)) {
    if (!name.startsWith("p.") || value === undefined) continue;
    for (const one of Array.isArray(value) ? value : [value]) params.push({ key: name.slice(2), value: one });
  }
  return {
    state: text(query, "state") as TaskState | undefined,
    phase: text(query, "phase"),
    text: text(query, "q"),
    params,
    sort: sort as TaskSort,
    dir,
    limit: number(query, "limit"),
    after: text(query, "after"),
  };
}

function plotQuery(query: Query): PlotQuery {
  const x = text(query, "x");
  const y = text(query, "y");
  if (!x || !y) throw new DashboardQueryError("a plot needs x (a parameter) and y (a metric)");
  return { x, y, series: text(query, "series"), facet: text(query, "facet"), phase: text(query, "phase") };
}

/** 401: for a browser, a page saying how to get in (nothing secret); for anything else, `{error}`. */
function denied(request: FastifyRequest, reply: FastifyReply, why: string): FastifyReply {
  reply.code(401);
  if (!(request.headers.accept ?? "").includes("text/html")) return reply.send({ error: why });
  return reply.type("text/html; charset=utf-8").send(deniedPage(`${why[0]?.toUpperCase()}${why.slice(1)}.`));
}

/** The page a browser gets without the token: how to get in, and nothing secret. */
function deniedPage(why: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>labsweep dashboard — token needed</title></head>
<body><main><h1>Token needed</h1><p>${why}</p>
<p>On the coordinator's machine, run <code>labsweep token --viewer</code>, then open this page's address followed by <code>/?token=</code> and that token. It is kept in a cookie for this browser session and taken off the address at once.</p>
<p>Pages opened on the coordinator's own machine (via 127.0.0.1 or localhost) need no token under <code>labsweep run</code> and <code>labsweep serve --trust-loopback</code>.</p></main></body></html>`;
}
