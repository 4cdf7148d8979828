/**
 * The dashboard's API in process (Fastify `inject`) over a real ledger driven through the real
 * Coordinator: keyset pagination in every sort, filters (state, phase, parameter, text), a
 * task's page, the overview against the ledger's own counts, machines with GPU telemetry,
 * mean ± std over seeds against hand-computed values, CSV quoting, the viewer-token rule
 * (loopback, cookie, DNS rebinding) and that no token ever reaches a page. The event stream is
 * read over a real socket, and closing the server with a stream open must not hang.
 */
import { parse } from "csv-parse/sync";
import type { InjectOptions, LightMyRequestResponse } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { appendLogChunk } from "../src/coordinator/taskLogs.js";
import { markAgentLost } from "../src/ledger/agents.js";
import type { Overview } from "../src/ledger/reads/overview.js";
import { PlotCache, type PlotData, plotData } from "../src/ledger/reads/plot.js";
import type { TaskDetail } from "../src/ledger/reads/taskDetail.js";
import type { TaskPage } from "../src/ledger/reads/tasks.js";
import type { AttemptRow } from "../src/ledger/rows.js";
import { phaseProgress } from "../src/ledger/taskCounts.js";
import type { Capacity } from "../src/protocol/capacity.js";
import { API_PREFIX } from "../src/protocol/http.js";
import { GpuTelemetry } from "../src/telemetry/gpuTelemetry.js";
import {
  AGENT_TOKEN,
  agentAuth,
  agentInfo,
  type Fixture,
  startFixture,
  VIEWER_TOKEN,
  viewerAuth,
  waitFor,
} from "./helpers/coordinatorFixture.js";

const fixtures: Fixture[] = [];
afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.close();
});

// 3 x × 2 groups × 3 seeds in `main` (one group value needs CSV quoting), and a gated `side`.
const SWEEP = `retries: 0
main:
  command: echo {x} {group} {seed}
  output_dir: out
  combinations:
    - x: [1, 2, 3]
    - group: [a, 'b,"q"']
    - seed: [1, 2, 3]
side:
  after: [main]
  command: echo side {z}
  output_dir: side
  combinations:
    - z: [7, 8]
`;
const B = 'b,"q"';
const SEED_OFFSET: Record<number, number> = { 1: 0, 2: 1, 3: 5 };
const REMOTE = "10.1.2.3";

/** acc for a main task: what the plot must average back out. */
function accOf(params: { x: number; group: string; seed: number }): number {
  return params.x * 10 + (params.group === "a" ? 0 : 100) + (SEED_OFFSET[params.seed] ?? 0);
}

/** Whether a main task fails (x = 3, group b, seed 3): its (x, group) point averages 2 seeds. */
function failsOf(params: { x: number; group: string; seed: number }): boolean {
  return params.x === 3 && params.group === B && params.seed === 3;
}

const CAPACITY: Capacity = {
  freeSlots: 100,
  freeCpus: Number.POSITIVE_INFINITY,
  hasGpus: false,
  gpus: [],
  tags: [],
};

/** Runs every claimable task through the coordinator: successes with metrics, one failure with a log. */
async function runAll(fixture: Fixture, worker = "w1", limit = Number.POSITIVE_INFINITY): Promise<void> {
  const { coordinator } = fixture.server;
  for (let done = 0; done < limit; done++) {
    const claim = await coordinator.lease({ worker, host: "host-1", capacity: CAPACITY });
    if (!claim) return;
    const params = claim.task.params as { x: number; group: string; seed: number };
    if (failsOf(params)) {
      const attempt = (await fixture.db.one<AttemptRow>("SELECT * FROM attempts WHERE id = $1", [
        claim.attemptId,
      ])) as AttemptRow;
      await appendLogChunk(fixture.stateDir, attempt, 0, "epoch 1\nboom: loss diverged\n");
      await coordinator.finish(claim.attemptId, {
        outcome: { kind: "failed", exitCode: 3, signal: null, error: "exit code 3", wallSeconds: 0.5 },
      });
    } else {
      await coordinator.finish(claim.attemptId, {
        outcome: {
          kind: "succeeded",
          metrics: "x" in params ? { acc: accOf(params), note: "text" } : { acc: 1 },
          wallSeconds: 1 + params.x / 10 || 1,
        },
      });
    }
  }
}

/** As `labsweep run` serves it: loopback (peer and Host) needs no token. */
async function serve(): Promise<Fixture> {
  const fixture = await startFixture(SWEEP, { trustLoopback: true });
  fixtures.push(fixture);
  return fixture;
}

function get(
  fixture: Fixture,
  url: string,
  headers: Record<string, string> = {},
  extra: Partial<InjectOptions> = {},
): Promise<LightMyRequestResponse> {
  return fixture.server.app.inject({ method: "GET", url, headers, ...extra } as InjectOptions);
}

async function json<T>(fixture: Fixture, path: string): Promise<T> {
  const response = await get(fixture, `${API_PREFIX}/dashboard${path}`);
  expect(response.statusCode, response.body).toBe(200);
  return response.json() as T;
}

/** Every page of a task query, following `next`. */
async function allPages(fixture: Fixture, query: string): Promise<TaskPage["rows"]> {
  const rows: TaskPage["rows"] = [];
  let after: string | null = null;
  for (let page = 0; page < 100; page++) {
    const result: TaskPage = await json<TaskPage>(
      fixture,
      `/tasks?${query}${after ? `&after=${encodeURIComponent(after)}` : ""}`,
    );
    rows.push(...result.rows);
    if (!result.next) return rows;
    after = result.next;
  }
  throw new Error("more than 100 pages");
}

describe("dashboard API", () => {
  it("pages through tasks by keyset in every sort and direction, each task once, in order", async () => {
    const fixture = await serve();
    await runAll(fixture);
    const everything = await allPages(fixture, "limit=500");
    expect(everything.map((row) => row.id)).toEqual(Array.from({ length: 20 }, (_, index) => index + 1));
    const keyOf: Record<string, (row: TaskPage["rows"][number]) => unknown[]> = {
      id: (row) => [row.id],
      state: (row) => [row.state, row.id],
      phase: (row) => [row.phase, row.state, row.id],
      wall: (row) => [row.wallSeconds, row.id],
      finished: (row) => [row.finishedAt, row.id],
    };
    for (const sort of Object.keys(keyOf)) {
      for (const dir of ["asc", "desc"] as const) {
        const rows = await allPages(fixture, `sort=${sort}&dir=${dir}&limit=3`);
        const ids = rows.map((row) => row.id);
        expect(new Set(ids).size, `${sort} ${dir}: no task twice`).toBe(ids.length);
        expect(ids.length, `${sort} ${dir}: every task`).toBe(20);
        const key = keyOf[sort] as (row: TaskPage["rows"][number]) => unknown[];
        const expected = [...everything].sort((a, b) => compareKeys(key(a), key(b), dir));
        expect(ids, `${sort} ${dir}`).toEqual(expected.map((row) => row.id));
      }
    }
    const first = await json<TaskPage>(fixture, "/tasks?limit=5");
    expect(first.total).toBe(20);
    expect(first.next).not.toBeNull();
  });

  it("filters by state, phase, parameter (numerically) and text, with exact totals where cheap", async () => {
    const fixture = await serve();
    await runAll(fixture);
    const ids = async (query: string) => (await allPages(fixture, query)).map((row) => row.id);
    const failed = await json<TaskPage>(fixture, "/tasks?state=failed");
    expect(failed.rows.map((row) => row.params)).toEqual([{ x: 3, group: B, seed: 3 }]);
    expect(failed.total).toBe(1);
    const side = await json<TaskPage>(fixture, "/tasks?phase=side");
    expect(side.rows.map((row) => row.params)).toEqual([{ z: 7 }, { z: 8 }]);
    expect(side.total).toBe(2);
    expect((await json<TaskPage>(fixture, "/tasks?phase=main&state=succeeded")).total).toBe(17);

    const x2 = await allPages(fixture, "p.x=2&limit=4");
    expect(x2).toHaveLength(6);
    expect(x2.every((row) => row.params.x === 2)).toBe(true);
    expect(await ids("p.x=2.0")).toEqual(x2.map((row) => row.id));
    expect((await json<TaskPage>(fixture, "/tasks?p.x=2")).total).toBeNull();
    const both = await allPages(fixture, `p.x=2&p.group=${encodeURIComponent(B)}`);
    expect(both.map((row) => row.params.seed)).toEqual([1, 2, 3]);
    expect(both.every((row) => row.params.group === B)).toBe(true);
    expect(await ids("p.x=2&state=failed")).toEqual([]);
    expect(await ids("p.nothing=1")).toEqual([]);

    // Text: in the command ("echo 3 …") or the parameters' JSON; % and _ are literal.
    const echo3 = await allPages(fixture, `q=${encodeURIComponent("echo 3 ")}`);
    expect(echo3).toHaveLength(6);
    expect(echo3.every((row) => row.params.x === 3)).toBe(true);
    expect((await allPages(fixture, `q=${encodeURIComponent('"z":8')}`)).map((row) => row.params)).toEqual([
      { z: 8 },
    ]);
    expect(await ids("q=%25")).toEqual([]);
    expect(await ids("q=_")).toEqual([]);
    expect((await allPages(fixture, `q=${encodeURIComponent('"q')}`)).length).toBe(9);

    for (const bad of ["sort=bogus", "dir=up", "state=done", "after=not-a-cursor", "limit=many"]) {
      const response = await get(fixture, `${API_PREFIX}/dashboard/tasks?${bad}`);
      expect(response.statusCode, bad).toBe(400);
      expect(response.json().error).toBeTruthy();
    }
  });

  it("gives a task's page: parameters, attempts, the error, and its log", async () => {
    const fixture = await serve();
    await runAll(fixture);
    const [row] = (await json<TaskPage>(fixture, "/tasks?state=failed")).rows;
    const detail = await json<TaskDetail>(fixture, `/tasks/${row?.id}`);
    expect(detail.params).toEqual({ x: 3, group: B, seed: 3 });
    expect(detail.state).toBe("failed");
    expect(detail.attempts).toEqual([
      expect.objectContaining({ number: 1, outcome: "failed", exitCode: 3, worker: "w1", host: "host-1" }),
    ]);
    expect(detail.error).toEqual(
      expect.objectContaining({ attempt: 1, message: "exit code 3", exitCode: 3 }),
    );
    expect(detail.placements).toEqual([expect.objectContaining({ phase: "main", active: true })]);
    const log = await get(fixture, `${API_PREFIX}/tasks/${row?.id}/log`);
    expect(log.body).toBe("epoch 1\nboom: loss diverged\n");

    const ok = await json<TaskDetail>(fixture, "/tasks/1");
    expect(ok.result).toEqual({ acc: accOf({ x: 1, group: "a", seed: 1 }), note: "text" });
    expect(ok.error).toBeNull();
    expect((await get(fixture, `${API_PREFIX}/dashboard/tasks/999`)).statusCode).toBe(404);
    expect((await get(fixture, `${API_PREFIX}/dashboard/tasks/abc`)).statusCode).toBe(400);
  });

  it("computes the overview: counts per phase equal the ledger's, gates say why, rate and ETA", async () => {
    const fixture = await serve();
    const before = await json<Overview>(fixture, "/overview");
    expect(before.totals).toMatchObject({ unique: 20, pending: 18, blocked: 2, succeeded: 0 });
    expect(before.gates).toEqual([expect.objectContaining({ phase: "side", state: "waiting" })]);
    expect(before.gates[0]?.reason).toMatch(/main/);
    expect(before.eta.seconds).toBeNull();
    await runAll(fixture);
    // The overview is cached while the ledger's version holds; it moved, so this one is fresh.
    await new Promise((resolve) => setTimeout(resolve, 800));
    const after = await json<Overview>(fixture, "/overview");
    expect(after.version).toBeGreaterThan(before.version);
    expect(after.totals).toMatchObject({ unique: 20, succeeded: 17, failed: 1, pending: 0, blocked: 2 });
    expect(after.byState).toMatchObject({ succeeded: 17, failed: 1, blocked: 2, pending: 0 });
    const ledger = await phaseProgress(fixture.db);
    expect(after.phases.map(({ byState: _, ...phase }) => phase)).toEqual(
      ledger.map((phase) => ({ ...phase })),
    );
    // The all-succeeded gate of `side` failed: it says so.
    expect(after.gates).toEqual([expect.objectContaining({ phase: "side", state: "blocked" })]);
    expect(after.rate.completions).toBe(18);
    expect(after.rate.perMinute).toBeGreaterThan(0);
    expect(after.eta.meanTaskSeconds).toBeGreaterThan(1);
  });

  it("counts a task shared by two phases in both, like the ledger does", async () => {
    const fixture = await startFixture(
      "retries: 0\ncommand: echo {x}\na:\n  output_dir: outa\n  combinations:\n    - x: [1, 2]\nb:\n  output_dir: outb\n  combinations:\n    - x: [2, 3]\n",
      { trustLoopback: true },
    );
    fixtures.push(fixture);
    await runAll(fixture);
    const overview = await json<Overview>(fixture, "/overview");
    expect(overview.totals).toMatchObject({ unique: 3, succeeded: 3 });
    expect(overview.phases.map(({ byState: _, ...phase }) => phase)).toEqual(await phaseProgress(fixture.db));
    expect(overview.phases.map((phase) => [phase.name, phase.succeeded])).toEqual([
      ["a", 2],
      ["b", 2],
    ]);
    const b = await json<TaskPage>(fixture, "/tasks?phase=b");
    expect(b.rows.map((row) => row.params)).toEqual([{ x: 2 }, { x: 3 }]);
    expect(b.total).toBe(2);
  });

  it("lists machines with their running tasks, GPU telemetry and lost state", async () => {
    const fixture = await serve();
    const register = await fixture.server.app.inject({
      method: "POST",
      url: `${API_PREFIX}/agents`,
      headers: agentAuth,
      payload: agentInfo("gpu-box", { slots: 3, gpus: [[24_576, 20_000]] }),
    });
    expect(register.statusCode, register.body).toBe(200);
    const claim = await fixture.server.coordinator.lease({
      worker: "gpu-box",
      host: "test-host",
      capacity: CAPACITY,
    });
    const { telemetry } = fixture.server;
    expect(telemetry).toBeInstanceOf(GpuTelemetry);
    telemetry.record("gpu-box", 1000, [
      { index: 0, utilizationPct: 40, memoryUsedMiB: 4000, memoryTotalMiB: 24_576 },
    ]);
    telemetry.record("gpu-box", 2000, [
      { index: 0, utilizationPct: 90, memoryUsedMiB: 9000, memoryTotalMiB: 24_576 },
    ]);
    const { machines } = await json<{ machines: Array<Record<string, unknown>> }>(fixture, "/machines");
    expect(machines).toEqual([
      expect.objectContaining({
        id: "gpu-box",
        kind: "agent",
        state: "connected",
        slots: 3,
        gpus: [{ index: 0, name: "Test GPU", memoryTotalMiB: 24_576 }],
        // Leased, but its process not started yet (as when leased ahead): it holds no slot.
        running: [
          expect.objectContaining({ taskId: claim?.task.id, attemptId: claim?.attemptId, started: false }),
        ],
        telemetry: [
          { at: 1000, gpus: [expect.objectContaining({ utilizationPct: 40 })] },
          { at: 2000, gpus: [expect.objectContaining({ utilizationPct: 90, memoryUsedMiB: 9000 })] },
        ],
      }),
    ]);
    const slots = await json<Overview>(fixture, "/overview");
    expect(slots.eta.slots).toBe(3);
    await markAgentLost(fixture.db, "gpu-box", "lease expired", Date.now());
    const lost = await json<{ machines: Array<Record<string, unknown>> }>(fixture, "/machines");
    expect(lost.machines[0]).toMatchObject({ state: "lost", lostReason: "lease expired" });
  });

  it("averages a metric over seeds: mean and sample std per (facet, series, x), as computed by hand", async () => {
    const fixture = await serve();
    await runAll(fixture);
    const plot = await json<PlotData>(fixture, "/plot?x=x&y=acc&series=group");
    expect(plot.used).toBe(17);
    expect(plot.numericX).toBe(true);
    expect(plot.facets).toHaveLength(1);
    const [a, b] = plot.facets[0]?.series ?? [];
    expect(a?.series).toBe("a");
    expect(b?.series).toBe(B);
    // Seeds add 0, 1 and 5: mean +2, std sqrt(((0−2)² + (1−2)² + (5−2)²) / 2) = sqrt(7).
    for (const [index, x] of [1, 2, 3].entries()) {
      const point = a?.points[index];
      expect(point?.x).toBe(x);
      expect(point?.n).toBe(3);
      expect(point?.mean).toBeCloseTo(x * 10 + 2, 10);
      expect(point?.std).toBeCloseTo(Math.sqrt(7), 10);
    }
    // Group b at x = 3 lost seed 3: seeds 1 and 2 give mean +0.5, std sqrt(0.5).
    expect(b?.points[2]).toMatchObject({ x: 3, n: 2, min: 130, max: 131 });
    expect(b?.points[2]?.mean).toBeCloseTo(130.5, 10);
    expect(b?.points[2]?.std).toBeCloseTo(Math.sqrt(0.5), 10);

    // The same numbers from the SQL aggregate, which counts results older than a few seconds
    // (here: all of them, seen from an hour later).
    const later = await new PlotCache(fixture.db, 4, () => Date.now() + 3_600_000).plot(plot.query);
    expect(later.used).toBe(17);
    expect(
      (await new PlotCache(fixture.db, 4, () => Date.now() + 3_600_000).plot({ x: "x", y: "note" })).used,
    ).toBe(0);
    expect(later.facets).toHaveLength(1);
    for (const [s, series] of (later.facets[0]?.series ?? []).entries())
      for (const [p, point] of series.points.entries()) {
        const expected = plot.facets[0]?.series[s]?.points[p];
        expect(point.x).toBe(expected?.x);
        expect(point.n).toBe(expected?.n);
        expect(point.mean).toBeCloseTo(expected?.mean as number, 9);
        expect(point.std).toBeCloseTo(expected?.std as number, 9);
        expect([point.min, point.max]).toEqual([expected?.min, expected?.max]);
      }

    // Facets: one plot per group, one line (no series), same numbers.
    const faceted = await json<PlotData>(fixture, "/plot?x=x&y=acc&facet=group&phase=main");
    expect(faceted.facets.map((facet) => facet.facet)).toEqual(["a", B]);
    expect(faceted.facets[1]?.series[0]?.points[0]?.mean).toBeCloseTo(112, 10);
    // A seed on x: nothing left to average over, std 0.
    const perSeed = await json<PlotData>(fixture, "/plot?x=seed&y=acc&series=group&facet=x");
    expect(perSeed.facets[0]?.series[0]?.points.every((point) => point.n === 1 && point.std === 0)).toBe(
      true,
    );
    // A metric that is not a number is no data, not an error.
    expect((await json<PlotData>(fixture, "/plot?x=x&y=note")).used).toBe(0);
    expect((await get(fixture, `${API_PREFIX}/dashboard/plot?x=x`)).statusCode).toBe(400);
  });

  it("keeps a plot up to date as results arrive, equal to computing it afresh", async () => {
    const fixture = await serve();
    await runAll(fixture, "w1", 7);
    const early = await json<PlotData>(fixture, "/plot?x=x&y=acc&series=group");
    expect(early.used).toBe(7);
    await runAll(fixture, "w1", 5);
    const middle = await json<PlotData>(fixture, "/plot?x=x&y=acc&series=group");
    expect(middle.used).toBe(12);
    await runAll(fixture);
    const late = await json<PlotData>(fixture, "/plot?x=x&y=acc&series=group");
    expect(late).toEqual(await plotData(fixture.db, late.query));
    expect(late.used).toBe(17);
  });

  it("exports the plot's view and all results as CSV, quoted properly", async () => {
    const fixture = await serve();
    await runAll(fixture);
    const response = await get(fixture, `${API_PREFIX}/dashboard/plot.csv?x=x&y=acc&series=group`);
    expect(response.statusCode).toBe(200);
    expect(response.headers["content-type"]).toMatch(/^text\/csv/);
    expect(response.headers["content-disposition"]).toMatch(/attachment; filename="acc-by-x\.csv"/);
    expect(response.body).toContain('"b,""q"""');
    const rows = parse(response.body, { columns: true }) as Array<Record<string, string>>;
    expect(Object.keys(rows[0] ?? {})).toEqual([
      "group",
      "x",
      "n",
      "acc_mean",
      "acc_std",
      "acc_min",
      "acc_max",
    ]);
    expect(rows).toHaveLength(6);
    const last = rows.find((row) => row.group === B && row.x === "3");
    expect(Number(last?.acc_mean)).toBeCloseTo(130.5, 10);
    expect(Number(last?.acc_std)).toBeCloseTo(Math.sqrt(0.5), 10);

    const all = await get(fixture, `${API_PREFIX}/dashboard/results.csv`);
    const results = parse(all.body, { columns: true }) as Array<Record<string, string>>;
    expect(results).toHaveLength(17);
    expect(results.filter((row) => row.group === B)).toHaveLength(8);
    expect(Object.keys(results[0] ?? {})).toEqual(
      expect.arrayContaining(["task_id", "phase", "x", "group", "seed", "acc", "wall_seconds"]),
    );
  });

  it("names clashing columns of results.csv as final_results.csv does: no header name twice", async () => {
    const fixture = await startFixture(
      "main:\n  command: echo {x} {task_id}\n  combinations:\n    - x: [1]\n    - task_id: [70]\n",
      {
        trustLoopback: true,
      },
    );
    fixtures.push(fixture);
    const claim = await fixture.server.coordinator.lease({ worker: "w1", host: "h", capacity: CAPACITY });
    if (!claim) throw new Error("no task to lease");
    await fixture.server.coordinator.finish(claim.attemptId, {
      outcome: {
        kind: "succeeded",
        metrics: { phase: 1, x: 2, task_id: 3, wall_seconds: 4, acc: 5 },
        wallSeconds: 6,
      },
    });
    const all = await get(fixture, `${API_PREFIX}/dashboard/results.csv`);
    const [header, row] = parse(all.body) as string[][];
    expect(new Set(header).size, String(header)).toBe(header?.length);
    const cells = Object.fromEntries((header ?? []).map((name, index) => [name, row?.[index]]));
    expect(cells).toEqual({
      task_id: String(claim.task.id),
      phase: "main",
      x: "1",
      param_task_id: "70",
      metric_phase: "1",
      metric_x: "2",
      metric_task_id: "3",
      metric_wall_seconds: "4",
      acc: "5",
      wall_seconds: "6",
    });
  });

  it("needs the viewer token off loopback: as a bearer, or once in ?token= which becomes an HttpOnly cookie", async () => {
    const fixture = await serve();
    const remote = { remoteAddress: REMOTE };
    const denied = await get(fixture, "/", { accept: "text/html,*/*" }, remote);
    expect(denied.statusCode).toBe(401);
    expect(denied.headers["content-type"]).toMatch(/text\/html/);
    expect(denied.body).toContain("labsweep token --viewer");
    // Not a browser: the API's usual `{error}`.
    expect((await get(fixture, "/", {}, remote)).json().error).toMatch(/viewer token/);
    expect((await get(fixture, `${API_PREFIX}/dashboard/overview`, {}, remote)).statusCode).toBe(401);
    expect((await get(fixture, "/assets/app.js", {}, remote)).statusCode).toBe(401);
    expect((await get(fixture, `${API_PREFIX}/dashboard/overview`, viewerAuth, remote)).statusCode).toBe(200);

    // The link: a cookie for this session, and away from the URL that carried the token.
    const link = await get(fixture, `/?token=${encodeURIComponent(VIEWER_TOKEN)}`, {}, remote);
    expect(link.statusCode).toBe(303);
    expect(link.headers.location).toBe("/");
    expect(link.headers["referrer-policy"]).toBe("no-referrer");
    const cookie = String(link.headers["set-cookie"]);
    expect(cookie).toMatch(/^labsweep_viewer=[^;]+; HttpOnly; SameSite=Strict; Path=\//);
    // The cookie holds a digest, not the token: a stolen cookie is no bearer token.
    expect(cookie).not.toContain(VIEWER_TOKEN);
    expect(cookie).not.toContain(encodeURIComponent(VIEWER_TOKEN));
    const jar = { cookie: cookie.split(";")[0] as string };
    const page = await get(fixture, "/", jar, remote);
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain("<main");
    expect((await get(fixture, `${API_PREFIX}/dashboard/overview`, jar, remote)).statusCode).toBe(200);
    expect((await get(fixture, "/assets/app.js", jar, remote)).statusCode).toBe(200);
    // The cookie opens the reads — the task log pane included — but never the agents' routes.
    expect((await get(fixture, `${API_PREFIX}/status`, jar, remote)).statusCode).toBe(200);
    expect((await get(fixture, `${API_PREFIX}/tasks/1/log`, jar, remote)).statusCode).not.toBe(401);
    const lease = await fixture.server.app.inject({
      method: "POST",
      url: `${API_PREFIX}/lease`,
      headers: jar,
      payload: {},
      ...remote,
    } as InjectOptions);
    expect(lease.statusCode).toBe(401);
    // The raw token as a cookie value is no cookie this server set.
    const raw = { cookie: `labsweep_viewer=${encodeURIComponent(VIEWER_TOKEN)}` };
    expect((await get(fixture, "/", raw, remote)).statusCode).toBe(401);

    // A wrong token, or the agent token, never becomes a cookie.
    for (const token of ["wrong", AGENT_TOKEN]) {
      const bad = await get(fixture, `/?token=${encodeURIComponent(token)}`, {}, remote);
      expect(bad.statusCode).toBe(401);
      expect(bad.headers["set-cookie"]).toBeUndefined();
    }
    expect((await get(fixture, "/", { cookie: "labsweep_viewer=wrong" }, remote)).statusCode).toBe(401);

    // Loopback needs no token — unless the Host is not this machine (a DNS-rebinding page).
    const local = { remoteAddress: "127.0.0.1" };
    expect((await get(fixture, "/", { host: "127.0.0.1:7070" }, local)).statusCode).toBe(200);
    expect((await get(fixture, "/", { host: "localhost" }, local)).statusCode).toBe(200);
    expect((await get(fixture, "/", { host: "[::1]:7070" }, { remoteAddress: "::1" })).statusCode).toBe(200);
    expect((await get(fixture, "/", { host: "evil.example:7070" }, local)).statusCode).toBe(401);
    expect((await get(fixture, "/", { host: "127.0.0.1.evil.example" }, local)).statusCode).toBe(401);
    expect((await get(fixture, "/", { host: "localhost.evil" }, local)).statusCode).toBe(401);
    expect(
      (await get(fixture, `${API_PREFIX}/dashboard/overview`, { host: "evil.example" }, local)).statusCode,
    ).toBe(401);
  });

  it("never puts a token in the page, its assets, its JSON, or the log", async () => {
    const fixture = await serve();
    await runAll(fixture);
    const bodies: string[] = [];
    const link = await get(
      fixture,
      `/?token=${encodeURIComponent(VIEWER_TOKEN)}`,
      {},
      { remoteAddress: REMOTE },
    );
    const jar = { cookie: String(link.headers["set-cookie"]).split(";")[0] as string };
    const page = await get(fixture, "/", jar, { remoteAddress: REMOTE });
    bodies.push(page.body, JSON.stringify(page.headers));
    const scripts = [...page.body.matchAll(/(?:src|href)="(assets\/[^"]+)"/g)].map((match) => match[1]);
    expect(scripts).toEqual(
      expect.arrayContaining(["assets/app.js", "assets/vendor/uplot.js", "assets/style.css"]),
    );
    for (const asset of [
      ...scripts,
      "assets/util.js",
      "assets/tasks.js",
      "assets/task.js",
      "assets/results.js",
      "assets/overview.js",
    ]) {
      const response = await get(fixture, `/${asset}`, jar, { remoteAddress: REMOTE });
      expect(response.statusCode, asset).toBe(200);
      bodies.push(response.body);
      // Nor does it suggest a command that puts one in argv, where `ps` shows it to every user.
      expect(response.body, asset).not.toMatch(/--token[= ](?!-file)/);
    }
    for (const path of [
      "/overview",
      "/machines",
      "/tasks",
      "/tasks/1",
      "/fields",
      "/results",
      "/plot?x=x&y=acc",
    ])
      bodies.push(
        (await get(fixture, `${API_PREFIX}/dashboard${path}`, jar, { remoteAddress: REMOTE })).body,
      );
    bodies.push(...fixture.warnings);
    for (const body of bodies) {
      expect(body).not.toContain(VIEWER_TOKEN);
      expect(body).not.toContain(AGENT_TOKEN);
    }
    expect(page.headers["content-security-policy"]).toContain("script-src 'self'");
  });

  it("pushes a new overview over server-sent events when the ledger changes; closing the server ends the stream", async () => {
    const fixture = await serve();
    const controller = new AbortController();
    const response = await fetch(`${fixture.server.url}${API_PREFIX}/dashboard/events`, {
      signal: controller.signal,
    });
    expect(response.headers.get("content-type")).toBe("text/event-stream");
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const overviews: Overview[] = [];
    let machines = 0;
    let buffer = "";
    const decoder = new TextDecoder();
    const reading = (async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return "ended";
        buffer += decoder.decode(value, { stream: true });
        for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (\w+)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event === "overview" && data) overviews.push(JSON.parse(data) as Overview);
          if (event === "machines") machines++;
        }
      }
    })();
    expect(await waitFor(() => overviews.length >= 1 && machines >= 1, 5000)).toBe(true);
    expect(overviews[0]?.totals.succeeded).toBe(0);
    await runAll(fixture);
    expect(await waitFor(() => overviews.at(-1)?.totals.succeeded === 17, 5000)).toBe(true);
    // The server closes with the stream open: promptly, and the client sees the end.
    const started = Date.now();
    await fixture.close();
    expect(Date.now() - started).toBeLessThan(3000);
    await expect(
      Promise.race([reading.catch(() => "ended"), new Promise((r) => setTimeout(() => r("hung"), 3000))]),
    ).resolves.toBe("ended");
    controller.abort();
  });
});

describe("GpuTelemetry", () => {
  it("keeps the last N readings per agent, oldest first", () => {
    const telemetry = new GpuTelemetry({ capacity: 3 });
    const sample = (pct: number) => [
      { index: 0, utilizationPct: pct, memoryUsedMiB: pct, memoryTotalMiB: 100 },
    ];
    for (let at = 1; at <= 5; at++) telemetry.record("a", at, sample(at * 10));
    telemetry.record("b", 9, sample(1));
    expect(telemetry.series("a").map((reading) => reading.at)).toEqual([3, 4, 5]);
    expect(telemetry.series("a")[2]?.gpus[0]?.utilizationPct).toBe(50);
    expect(telemetry.series("b")).toHaveLength(1);
    expect(telemetry.series("nobody")).toEqual([]);
    telemetry.record("a", 6, sample(60));
    expect(telemetry.series("a").map((reading) => reading.at)).toEqual([4, 5, 6]);
  });
});

/** Orders keys the way the dashboard promises: values ascending or descending, NULLs last either way. */
function compareKeys(a: unknown[], b: unknown[], dir: "asc" | "desc"): number {
  const [first, ...rest] = a;
  const [other, ...others] = b;
  if (first === null && other !== null) return 1;
  if (other === null && first !== null) return -1;
  const sign = dir === "asc" ? 1 : -1;
  if (first !== other) {
    if (typeof first === "number" && typeof other === "number") return sign * (first - other);
    return sign * String(first).localeCompare(String(other));
  }
  if (rest.length === 0) return 0;
  if (first === null) {
    // Among NULLs, by id in the same direction.
    return sign * ((rest.at(-1) as number) - (others.at(-1) as number));
  }
  return compareKeys(rest, others, dir);
}
