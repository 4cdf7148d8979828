/**
 * The coordinator's HTTP API in process (Fastify's `inject`, no sockets): tokens and who may do
 * what, input validation, fencing of attempts, long-poll leases and `done`, GPU memory, cancel,
 * adding configs to a live sweep, streamed logs, and a barrage of garbage that must never crash
 * the server.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { InjectOptions, LightMyRequestResponse } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { API_PREFIX } from "../src/protocol/http.js";
import {
  AGENT_TOKEN,
  agentAuth,
  agentInfo,
  authFor,
  capacityOf,
  csvRows,
  type Fixture,
  simpleSweep,
  startFixture,
  VIEWER_TOKEN,
  viewerAuth,
  waitFor,
} from "./helpers/coordinatorFixture.js";
import { mulberry32 } from "./helpers/random.js";

const fixtures: Fixture[] = [];
afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.close();
});

async function serve(yaml: string, options: Parameters<typeof startFixture>[1] = {}): Promise<Fixture> {
  const fixture = await startFixture(yaml, options);
  fixtures.push(fixture);
  return fixture;
}

type Headers = Record<string, string>;

/** One request to the API; `headers` default to the token the route needs (see authFor). */
function call(
  fixture: Fixture,
  method: "GET" | "POST",
  path: string,
  body?: unknown,
  headers: Headers = authFor(path),
  extra: Partial<InjectOptions> = {},
): Promise<LightMyRequestResponse> {
  return fixture.server.app.inject({
    method,
    url: `${API_PREFIX}${path}`,
    headers,
    ...(body === undefined ? {} : { payload: body as InjectOptions["payload"] }),
    ...extra,
  } as InjectOptions);
}

async function register(fixture: Fixture, agentId: string, options?: Parameters<typeof agentInfo>[1]) {
  const response = await call(fixture, "POST", "/agents", agentInfo(agentId, options));
  expect(response.statusCode, response.body).toBe(200);
  return response.json() as { leaseMs: number; heartbeatMs: number; openAttempts: number[] };
}

interface LeaseBody {
  lease: {
    attemptId: number;
    gpuIds: number[];
    task: { id: number; params: Record<string, unknown> };
  } | null;
  done: boolean;
}

async function lease(
  fixture: Fixture,
  agentId: string,
  waitMs = 0,
  capacity: ReturnType<typeof capacityOf> = capacityOf(),
): Promise<LeaseBody> {
  const response = await call(fixture, "POST", "/lease", { agentId, capacity, waitMs });
  expect(response.statusCode, response.body).toBe(200);
  return response.json() as LeaseBody;
}

function finish(fixture: Fixture, agentId: string, attemptId: number, outcome: object) {
  return call(fixture, "POST", `/attempts/${attemptId}/finish`, { agentId, outcome });
}

const success = { kind: "succeeded", metrics: { acc: 0.5 }, wallSeconds: 1 };

async function count(fixture: Fixture, table: "agents" | "attempts"): Promise<number> {
  return ((await fixture.db.one<{ n: number }>(`SELECT count(*) AS n FROM ${table}`)) as { n: number }).n;
}

async function taskStates(fixture: Fixture): Promise<string[]> {
  return (await fixture.db.all<{ state: string }>("SELECT state FROM tasks ORDER BY id")).map(
    (row) => row.state,
  );
}

function expectError(response: LightMyRequestResponse, status: number, context = ""): string {
  expect(response.statusCode, `${response.body} ${context}`).toBe(status);
  const body = response.json() as { error?: unknown };
  expect(typeof body.error).toBe("string");
  return body.error as string;
}

describe("tokens", () => {
  it("rejects a missing or wrong token with 401 and changes nothing", async () => {
    const fixture = await serve(simpleSweep(2));
    const wrong: Headers[] = [
      {},
      { authorization: "Bearer not-the-token" },
      { authorization: `Basic ${AGENT_TOKEN}` },
      { authorization: `Bearer ${AGENT_TOKEN}x` },
      { authorization: AGENT_TOKEN },
    ];
    for (const headers of wrong) {
      expectError(await call(fixture, "POST", "/agents", agentInfo("a1"), headers), 401);
    }
    expect(await count(fixture, "agents")).toBe(0);

    await register(fixture, "a1");
    for (const headers of wrong) {
      const body = { agentId: "a1", capacity: capacityOf(), waitMs: 0 };
      expectError(await call(fixture, "POST", "/lease", body, headers), 401);
      expectError(await call(fixture, "POST", "/cancel", { phase: "main" }, headers), 401);
    }
    expect(await count(fixture, "attempts")).toBe(0);
    expect(await taskStates(fixture)).toEqual(["pending", "pending"]);
  });

  it("lets the viewer token read but never lease, report or change the sweep", async () => {
    const fixture = await serve(simpleSweep(2));
    await register(fixture, "a1");
    const claimed = await lease(fixture, "a1");
    const attemptId = claimed.lease?.attemptId as number;
    const remote = { remoteAddress: "10.1.2.3" };

    expectError(await call(fixture, "POST", "/agents", agentInfo("v1"), viewerAuth), 401);
    const changes: Array<[string, unknown]> = [
      ["/lease", { agentId: "a1", capacity: capacityOf(), waitMs: 0 }],
      ["/heartbeat", { agentId: "a1", attemptIds: [attemptId] }],
      [`/attempts/${attemptId}/started`, { agentId: "a1", pid: 12 }],
      [`/attempts/${attemptId}/finish`, { agentId: "a1", outcome: success }],
      [`/attempts/${attemptId}/log`, { agentId: "a1", offset: 0, text: "x" }],
      ["/cancel", { taskIds: [1, 2] }],
      ["/retry", {}],
      ["/configs", { files: [{ path: join(fixture.dir, "x.yaml"), text: simpleSweep(1) }] }],
    ];
    for (const [path, body] of changes) {
      expectError(await call(fixture, "POST", path, body, viewerAuth, remote), 401);
      expectError(await call(fixture, "POST", path, body, viewerAuth), 401); // loopback does not help
    }
    expectError(await call(fixture, "GET", "/channel?agentId=a1", undefined, viewerAuth), 401);
    expect(await count(fixture, "agents")).toBe(1);
    expect(await count(fixture, "attempts")).toBe(1);
    expect(await taskStates(fixture)).toEqual(["running", "pending"]);

    for (const path of ["/status", "/agents", "/tasks/1", "/tasks/1/log"]) {
      const response = await call(fixture, "GET", path, undefined, viewerAuth, remote);
      expect(response.statusCode, `${path}: ${response.body}`).toBe(200);
    }
    const status = (await call(fixture, "GET", "/status", undefined, viewerAuth, remote)).json();
    expect(status).toMatchObject({ unique: 2, running: 1, pending: 1 });
  });

  it("serves reads to trusted loopback without a token, and to other peers only with one", async () => {
    const fixture = await serve(simpleSweep(1), { trustLoopback: true });
    for (const remoteAddress of ["127.0.0.1", "::1", "::ffff:127.0.0.1"]) {
      const response = await call(fixture, "GET", "/status", undefined, {}, { remoteAddress });
      expect(response.statusCode, remoteAddress).toBe(200);
    }
    for (const remoteAddress of ["10.1.2.3", "192.168.0.5", "::ffff:10.0.0.1", "2001:db8::1"]) {
      for (const path of ["/status", "/agents", "/tasks/1", "/tasks/1/log"])
        expectError(await call(fixture, "GET", path, undefined, {}, { remoteAddress }), 401);
      const wrong = { authorization: "Bearer nope" };
      expectError(await call(fixture, "GET", "/status", undefined, wrong, { remoteAddress }), 401);
      for (const headers of [viewerAuth, agentAuth]) {
        const response = await call(fixture, "GET", "/status", undefined, headers, { remoteAddress });
        expect(response.statusCode).toBe(200);
      }
    }
    // Loopback reads need no token, but loopback changes still do.
    expectError(await call(fixture, "POST", "/agents", agentInfo("a1"), {}), 401);
  });
});

describe("input validation", () => {
  it("answers malformed JSON with 400 and a JSON error", async () => {
    const fixture = await serve(simpleSweep(1));
    await register(fixture, "a1");
    const json = { ...agentAuth, "content-type": "application/json" };
    for (const payload of ["{not json", '{"agentId": "a1",', "[1, 2", "\u0000", '{"a":1}}']) {
      const error = expectError(await call(fixture, "POST", "/lease", payload, json), 400);
      expect(error).toMatch(/JSON/);
    }
    expectError(await call(fixture, "POST", "/lease", "", json), 400);
    const wrongType = await call(fixture, "POST", "/lease", "agentId=a1", {
      ...agentAuth,
      "content-type": "application/x-www-form-urlencoded",
    });
    expect(wrongType.statusCode).toBe(415);
    expect(wrongType.json()).toEqual({ error: "send JSON (Content-Type: application/json)" });
    expect(await count(fixture, "attempts")).toBe(0);
  });

  it("answers missing fields and wrong types with 400 before anything happens", async () => {
    const fixture = await serve(simpleSweep(2));
    await register(fixture, "a1");
    const claimed = await lease(fixture, "a1");
    const attemptId = claimed.lease?.attemptId as number;
    const { agentId: _agentId, ...noAgentId } = agentInfo("a2");
    const bad: Array<[string, unknown]> = [
      ["/agents", {}],
      ["/agents", noAgentId],
      ["/agents", { ...agentInfo("a2"), slots: "many" }],
      ["/agents", { ...agentInfo("a2"), slots: 0 }],
      ["/agents", { ...agentInfo("a2"), gpus: "all" }],
      ["/agents", { ...agentInfo("a2"), agentId: "" }],
      ["/agents", []],
      ["/agents", "null"],
      ["/lease", { agentId: "a1", waitMs: 0 }],
      ["/lease", { agentId: "a1", capacity: "lots", waitMs: 0 }],
      ["/lease", { agentId: "a1", capacity: capacityOf(), waitMs: -5 }],
      ["/lease", { agentId: "a1", capacity: capacityOf(), waitMs: "soon" }],
      ["/lease", { agentId: "a1", capacity: { ...capacityOf(), freeSlots: -1 }, waitMs: 0 }],
      ["/lease", { agentId: "a1", capacity: { ...capacityOf(), gpus: [{ index: 0 }] }, waitMs: 0 }],
      ["/lease", { agentId: { id: "a1" }, capacity: capacityOf(), waitMs: 0 }],
      ["/heartbeat", { agentId: "a1" }],
      ["/heartbeat", { agentId: "a1", attemptIds: ["x"] }],
      [`/attempts/${attemptId}/started`, { agentId: "a1", pid: 0 }],
      [`/attempts/${attemptId}/finish`, { agentId: "a1" }],
      [`/attempts/${attemptId}/finish`, { agentId: "a1", outcome: { kind: "exploded" } }],
      [`/attempts/${attemptId}/finish`, { agentId: "a1", outcome: { kind: "succeeded" } }],
      [`/attempts/${attemptId}/finish`, { agentId: "a1", outcome: { kind: "succeeded", metrics: {} } }],
      [`/attempts/${attemptId}/finish`, { agentId: "a1", outcome: "succeeded" }],
      [`/attempts/${attemptId}/log`, { agentId: "a1", offset: -1, text: "x" }],
      [`/attempts/${attemptId}/log`, { agentId: "a1", offset: 0, text: { a: 1 } }],
      [`/attempts/abc/finish`, { agentId: "a1", outcome: success }],
      [`/attempts/1e3/finish`, { agentId: "a1", outcome: success }],
      ["/cancel", { taskIds: "all" }],
      ["/cancel", { phase: { name: "main" } }],
      ["/configs", {}],
      ["/configs", { files: [] }],
      ["/configs", { files: [{ path: "x.yaml" }] }],
    ];
    for (const [path, body] of bad) {
      const payload = typeof body === "string" ? body : JSON.stringify(body);
      const response = await call(fixture, "POST", path, payload, {
        ...authFor(path),
        "content-type": "application/json",
      });
      expect(response.statusCode, `${path} ${payload}: ${response.body}`).toBe(400);
      expect((response.json() as { error: string }).error).toMatch(/^invalid request|JSON/);
    }
    expect(await count(fixture, "agents")).toBe(1);
    expect(await count(fixture, "attempts")).toBe(1);
    expect(await taskStates(fixture)).toEqual(["running", "pending"]);
    const attempt = await fixture.db.one<{ ended_at: number | null; pid: number | null }>(
      "SELECT ended_at, pid FROM attempts WHERE id = $1",
      [attemptId],
    );
    expect(attempt).toEqual({ ended_at: null, pid: null });
  });

  it("answers a body over the limit with 413", async () => {
    const fixture = await serve(simpleSweep(1));
    const huge = { ...agentInfo("a1"), name: "x".repeat(2 * 1024 * 1024) };
    const error = expectError(await call(fixture, "POST", "/agents", huge), 413);
    expect(error).toBe("request body too large");
    expect(await count(fixture, "agents")).toBe(0);
  });
});

describe("attempts are fenced", () => {
  it("404 for an unknown attempt, 409 for another agent's attempt or an unknown agent", async () => {
    const fixture = await serve(simpleSweep(2));
    await register(fixture, "a1");
    await register(fixture, "a2");
    const attemptId = (await lease(fixture, "a1")).lease?.attemptId as number;

    expectError(await finish(fixture, "a1", 9999, success), 404);
    expectError(await call(fixture, "POST", "/attempts/9999/started", { agentId: "a1", pid: 5 }), 404);
    expectError(
      await call(fixture, "POST", "/attempts/9999/log", { agentId: "a1", offset: 0, text: "x" }),
      404,
    );

    expect(await finish(fixture, "a2", attemptId, success).then((r) => expectError(r, 409))).toMatch(
      /another agent/,
    );
    expectError(
      await call(fixture, "POST", `/attempts/${attemptId}/started`, { agentId: "a2", pid: 5 }),
      409,
    );
    expectError(
      await call(fixture, "POST", `/attempts/${attemptId}/log`, { agentId: "a2", offset: 0, text: "x" }),
      409,
    );

    const ghost = { agentId: "ghost", capacity: capacityOf(), waitMs: 0 };
    expect(expectError(await call(fixture, "POST", "/lease", ghost), 409)).toMatch(/register/);
    expectError(
      await call(fixture, "POST", "/heartbeat", { agentId: "ghost", attemptIds: [attemptId] }),
      409,
    );
    expectError(await call(fixture, "GET", "/channel?agentId=ghost"), 409);

    // The rightful holder's attempt is untouched, and a heartbeat naming someone else's attempt
    // says it is not yours.
    expect(await taskStates(fixture)).toEqual(["running", "pending"]);
    const other = await call(fixture, "POST", "/heartbeat", { agentId: "a2", attemptIds: [attemptId] });
    expect(other.json()).toEqual({ stale: [attemptId] });
    const own = await call(fixture, "POST", "/heartbeat", { agentId: "a1", attemptIds: [attemptId] });
    expect(own.json()).toEqual({ stale: [] });
    expect(await count(fixture, "attempts")).toBe(1);
  });

  it("says what a client may act on in a code, beside the human text", async () => {
    const fixture = await serve(simpleSweep(2));
    await register(fixture, "a1");
    await register(fixture, "a2");
    const attemptId = (await lease(fixture, "a1")).lease?.attemptId as number;
    const codeOf = (response: LightMyRequestResponse) => (response.json() as { code?: string }).code;

    expect(codeOf(await finish(fixture, "a1", 9999, success))).toBe("unknown_attempt");
    expect(codeOf(await finish(fixture, "a2", attemptId, success))).toBe("foreign_attempt");
    const ghost = { agentId: "ghost", capacity: capacityOf(), waitMs: 0 };
    expect(codeOf(await call(fixture, "POST", "/lease", ghost))).toBe("unknown_agent");
    expect(codeOf(await call(fixture, "GET", "/channel?agentId=ghost"))).toBe("unknown_agent");
    // An error no client branches on has no code.
    expect(codeOf(await call(fixture, "POST", "/lease", { agentId: "a1" }))).toBeUndefined();
  });

  it("accepts a finish once: a re-send is accepted:false and writes no second CSV row", async () => {
    const fixture = await serve(simpleSweep(1));
    await register(fixture, "a1");
    const attemptId = (await lease(fixture, "a1")).lease?.attemptId as number;
    const first = await finish(fixture, "a1", attemptId, { ...success, metrics: { acc: 0.75 } });
    expect(first.json()).toEqual({ accepted: true, taskState: "succeeded" });
    const again = await finish(fixture, "a1", attemptId, { ...success, metrics: { acc: 0.1 } });
    expect(again.statusCode).toBe(200);
    expect(again.json()).toMatchObject({ accepted: false });
    const failedLate = await finish(fixture, "a1", attemptId, {
      kind: "failed",
      exitCode: 1,
      signal: null,
      error: "x",
      wallSeconds: 1,
    });
    expect(failedLate.json()).toMatchObject({ accepted: false });
    await fixture.server.coordinator.drainResults();
    const rows = csvRows(fixture.dir);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toContain("0.75");
    expect(await taskStates(fixture)).toEqual(["succeeded"]);
  });
});

describe("leases", () => {
  it("holds a lease request about waitMs when nothing is pending, then answers no lease, not done", async () => {
    const fixture = await serve(simpleSweep(1));
    await register(fixture, "a1");
    await register(fixture, "a2");
    expect((await lease(fixture, "a1")).lease).not.toBeNull();
    const started = Date.now();
    const answer = await lease(fixture, "a2", 600);
    const took = Date.now() - started;
    expect(answer).toMatchObject({ lease: null, leases: [], done: false });
    expect(took).toBeGreaterThanOrEqual(550);
    expect(took).toBeLessThan(2000);
  });

  it("answers a waiting lease within milliseconds when configs are added", async () => {
    const fixture = await serve(simpleSweep(1));
    await register(fixture, "a1");
    await register(fixture, "a2");
    await lease(fixture, "a1");
    const started = Date.now();
    const waiting = lease(fixture, "a2", 20_000);
    await new Promise((resolve) => setTimeout(resolve, 150));
    const extra = join(fixture.dir, "extra.yaml");
    const added = await call(fixture, "POST", "/configs", {
      files: [
        {
          path: extra,
          text: "command: echo {y}\nextra:\n  output_dir: out2\n  combinations:\n    - y: [7]\n",
        },
      ],
    });
    expect(added.statusCode, added.body).toBe(200);
    const addedAt = Date.now();
    const answer = await waiting;
    expect(Date.now() - addedAt).toBeLessThan(500);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(answer.lease?.task.params).toEqual({ y: 7 });
  });

  it("answers a waiting lease within milliseconds when failed tasks are retried or a task is requeued", async () => {
    const fixture = await serve(simpleSweep(2));
    await register(fixture, "a1");
    await register(fixture, "a2");
    const first = (await lease(fixture, "a1")).lease?.attemptId as number;
    const second = (await lease(fixture, "a1")).lease?.attemptId as number;
    const failed = await finish(fixture, "a1", first, {
      kind: "failed",
      exitCode: 3,
      signal: null,
      error: "exit 3",
      wallSeconds: 0.1,
    });
    expect(failed.json()).toEqual({ accepted: true, taskState: "failed" });

    let waiting = lease(fixture, "a2", 20_000);
    await new Promise((resolve) => setTimeout(resolve, 150));
    const retried = await call(fixture, "POST", "/retry", {});
    expect(retried.json()).toEqual({ retried: 1 });
    let at = Date.now();
    expect((await waiting).lease?.task.id).toBe(1);
    expect(Date.now() - at).toBeLessThan(500);

    waiting = lease(fixture, "a2", 20_000);
    await new Promise((resolve) => setTimeout(resolve, 150));
    const interrupted = await finish(fixture, "a1", second, { kind: "interrupted", error: "stopped" });
    expect(interrupted.json()).toEqual({ accepted: true, taskState: "pending" });
    at = Date.now();
    expect((await waiting).lease?.task.id).toBe(2);
    expect(Date.now() - at).toBeLessThan(500);
  });

  it("says done when the sweep has finished", async () => {
    const fixture = await serve(simpleSweep(1));
    await register(fixture, "a1");
    await register(fixture, "a2");
    const attemptId = (await lease(fixture, "a1")).lease?.attemptId as number;
    const waiting = lease(fixture, "a2", 20_000);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await finish(fixture, "a1", attemptId, success);
    const started = Date.now();
    expect(await waiting).toMatchObject({ lease: null, leases: [], done: true });
    expect(Date.now() - started).toBeLessThan(1000);
    expect(await lease(fixture, "a1", 20_000)).toMatchObject({ lease: null, leases: [], done: true });
  });

  it("says done at once when no remaining task could ever fit the agent", async () => {
    const fixture = await serve(simpleSweep(2, "resources: {gpus: 1}\n"));
    await register(fixture, "cpu-only");
    const started = Date.now();
    expect(await lease(fixture, "cpu-only", 20_000)).toMatchObject({ lease: null, leases: [], done: true });
    expect(Date.now() - started).toBeLessThan(1000);
    await register(fixture, "gpu", { gpus: [[16_384, 16_384]] });
    const answer = await lease(fixture, "gpu", 0, capacityOf({ gpusFreeMiB: [16_384] }));
    expect(answer.lease?.gpuIds).toEqual([0]);
  });

  it("leases a 16 GB task only to an agent with a GPU that has 16 GB free", async () => {
    const fixture = await serve(simpleSweep(2, "resources: {gpus: 1, gpu_memory_gb: 16}\n"));
    await register(fixture, "small", { gpus: [[8192, 8192]] });
    await register(fixture, "busy", { gpus: [[24_576, 8192]] });
    await register(fixture, "big", { gpus: [[24_576, 24_576]] });
    // An 8 GB card can never run it: done.
    expect(await lease(fixture, "small", 5000, capacityOf({ gpusFreeMiB: [8192] }))).toMatchObject({
      lease: null,
      done: true,
    });
    // A 24 GB card with 8 GB free now cannot run it yet, but may later: not done.
    expect(await lease(fixture, "busy", 300, capacityOf({ gpusFreeMiB: [8192] }))).toMatchObject({
      lease: null,
      done: false,
    });
    expect(await count(fixture, "attempts")).toBe(0);
    const answer = await lease(fixture, "big", 0, capacityOf({ gpusFreeMiB: [24_576] }));
    expect(answer.lease?.gpuIds).toEqual([0]);
    const attempts = await fixture.db.all<{ worker: string }>("SELECT worker FROM attempts");
    expect(attempts).toEqual([{ worker: "big" }]);
  });

  it("leases a task with resources.tags only to an agent offering its tags; others get done", async () => {
    const fixture = await serve(
      "command: echo {x}\nretries: 0\nlarge:\n  output_dir: out_large\n  resources: {tags: [big]}\n  combinations:\n    - x: [1]\nsmall:\n  output_dir: out\n  combinations:\n    - x: [2]\n",
    );
    await register(fixture, "plain");
    await register(fixture, "other", { tags: ["spot"] });
    await register(fixture, "tagged", { tags: ["big"] });
    // The tagged task comes first, but the plain agent is handed the untagged one.
    const plain = await lease(fixture, "plain", 0, capacityOf());
    expect(plain.lease?.task.params).toEqual({ x: 2 });
    await finish(fixture, "plain", plain.lease?.attemptId as number, success);
    // Only the tagged task is left: agents without the tag are done (old agents send no tags).
    const noTags = { freeSlots: 2, freeCpus: null, hasGpus: false, gpus: [] };
    const doneFor = async (agentId: string, capacity: object): Promise<boolean> => {
      const response = await call(fixture, "POST", "/lease", { agentId, capacity, waitMs: 0 });
      expect(response.statusCode, response.body).toBe(200);
      const body = response.json() as LeaseBody;
      expect(body.lease).toBeNull();
      return body.done;
    };
    expect(await waitFor(() => doneFor("plain", capacityOf()), 3000)).toBe(true);
    expect(await doneFor("plain", noTags)).toBe(true);
    expect(await doneFor("other", capacityOf({ tags: ["spot"] }))).toBe(true);
    expect(await count(fixture, "attempts")).toBe(1);
    const started = Date.now();
    expect(await lease(fixture, "plain", 20_000)).toMatchObject({ lease: null, leases: [], done: true });
    expect(Date.now() - started).toBeLessThan(1000);
    // The agent offering the tag gets it.
    const tagged = await lease(fixture, "tagged", 0, capacityOf({ tags: ["big"] }));
    expect(tagged.lease?.task.params).toEqual({ x: 1 });
    const attempts = await fixture.db.all<{ worker: string }>("SELECT worker FROM attempts ORDER BY id");
    expect(attempts).toEqual([{ worker: "plain" }, { worker: "tagged" }]);
  });

  it("rejects a lease whose capacity tags are not a list of strings", async () => {
    const fixture = await serve(simpleSweep(1));
    await register(fixture, "a1");
    for (const tags of [[{}], { big: true }, ["x".repeat(101)]]) {
      const capacity = { ...capacityOf(), tags };
      const response = await call(fixture, "POST", "/lease", { agentId: "a1", capacity, waitMs: 0 });
      expectError(response, 400, JSON.stringify(tags));
    }
    expect(await count(fixture, "attempts")).toBe(0);
  });
});

describe("health", () => {
  it("answers 200 while the ledger answers, 503 once it cannot be reached", async () => {
    const fixture = await serve(simpleSweep(1));
    const ok = await call(fixture, "GET", "/health", undefined, {});
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toMatchObject({ ok: true, store: "sqlite" });
    await fixture.db.close();
    const down = await call(fixture, "GET", "/health", undefined, {});
    expect(down.statusCode).toBe(503);
    expect(down.json()).toMatchObject({ ok: false, error: expect.stringContaining("ledger") });
  });
});

describe("heartbeats", () => {
  it("keep the GPU readings they carry for the dashboard, and refuse malformed ones", async () => {
    const fixture = await serve(simpleSweep(1));
    await register(fixture, "a1", { gpus: [[8192, 8192]] });
    const gpus = [{ index: 0, utilizationPct: 87, memoryUsedMiB: 5000, memoryTotalMiB: 8192 }];
    const response = await call(fixture, "POST", "/heartbeat", { agentId: "a1", attemptIds: [], gpus });
    expect(response.statusCode, response.body).toBe(200);
    expect(fixture.server.telemetry.series("a1").map((reading) => reading.gpus)).toEqual([gpus]);
    const bad = [{ index: 0, utilizationPct: 150, memoryUsedMiB: 1, memoryTotalMiB: 2 }];
    expectError(await call(fixture, "POST", "/heartbeat", { agentId: "a1", attemptIds: [], gpus: bad }), 400);
    expect(fixture.server.telemetry.series("a1")).toHaveLength(1);
  });
});

describe("batched leases and carried reports", () => {
  interface BatchBody {
    leases: Array<{ attemptId: number; gpuIds: number[]; task: { id: number } }>;
    reports: Array<{ attemptId: number; accepted?: boolean; error?: string }>;
    done: boolean;
  }
  async function batch(fixture: Fixture, agentId: string, body: object): Promise<BatchBody> {
    const response = await call(fixture, "POST", "/lease", { agentId, waitMs: 0, ...body });
    expect(response.statusCode, response.body).toBe(200);
    return response.json() as BatchBody;
  }

  it("leases up to max tasks, each fitting what the ones before it left", async () => {
    const fixture = await serve(simpleSweep(6, "resources: {gpus: 1}\n"));
    await register(fixture, "a1", {
      gpus: [
        [8192, 8192],
        [8192, 8192],
      ],
    });
    // Two whole GPUs and four slots: only two one-GPU tasks fit together, on different GPUs.
    const capacity = { ...capacityOf({ slots: 4, gpusFreeMiB: [8192, 8192] }) };
    const answer = await batch(fixture, "a1", { capacity, max: 4 });
    expect(answer.leases.map((lease) => lease.gpuIds)).toEqual([[0], [1]]);
    expect(answer.leases.map((lease) => lease.task.id)).toEqual([1, 2]);
    expect(await count(fixture, "attempts")).toBe(2);
  });

  it("records carried reports before leasing, with one verdict per report in order", async () => {
    const fixture = await serve(simpleSweep(4));
    await register(fixture, "a1");
    await register(fixture, "a2");
    const first = await batch(fixture, "a1", { capacity: capacityOf({ slots: 2 }), max: 2 });
    const theirs = await batch(fixture, "a2", { capacity: capacityOf({ slots: 1 }), max: 1 });
    const [one, two] = first.leases.map((lease) => lease.attemptId) as [number, number];
    const foreign = theirs.leases[0]?.attemptId as number;
    const answer = await batch(fixture, "a1", {
      capacity: capacityOf({ slots: 2 }),
      max: 2,
      reports: [
        { attemptId: one, outcome: success },
        { attemptId: 999, outcome: success },
        { attemptId: foreign, outcome: success },
        {
          attemptId: two,
          outcome: { kind: "failed", exitCode: 1, signal: null, error: "boom", wallSeconds: 1 },
        },
      ],
    });
    expect(answer.reports).toEqual([
      { attemptId: one, accepted: true },
      { attemptId: 999, error: expect.stringMatching(/^404: unknown attempt/) },
      { attemptId: foreign, error: expect.stringMatching(/^409: .*another agent/) },
      { attemptId: two, accepted: true },
    ]);
    // The reported tasks were settled first: neither comes back, the fourth task is leased.
    expect(answer.leases.map((lease) => lease.task.id)).toEqual([4]);
    expect(await taskStates(fixture)).toEqual(["succeeded", "failed", "running", "running"]);
    // A re-sent report is recorded once.
    const again = await batch(fixture, "a1", {
      capacity: capacityOf({ slots: 1 }),
      max: 0,
      reports: [{ attemptId: one, outcome: success }],
    });
    expect(again.reports).toEqual([{ attemptId: one, accepted: false }]);
    expect(again.leases).toEqual([]);
  });

  it("rejects a malformed carried report with 400 and records nothing", async () => {
    const fixture = await serve(simpleSweep(1));
    await register(fixture, "a1");
    const attemptId = (await lease(fixture, "a1")).lease?.attemptId as number;
    const response = await call(fixture, "POST", "/lease", {
      agentId: "a1",
      capacity: capacityOf(),
      waitMs: 0,
      reports: [{ attemptId, outcome: { kind: "succeeded" } }],
    });
    expectError(response, 400);
    expect(await taskStates(fixture)).toEqual(["running"]);
  });
});

describe("cancel", () => {
  it("cancels running and pending tasks: the heartbeat says stale and a late success is ignored", async () => {
    const fixture = await serve(simpleSweep(3));
    await register(fixture, "a1", { slots: 1 });
    const attemptId = (await lease(fixture, "a1")).lease?.attemptId as number;
    const cancelled = await call(fixture, "POST", "/cancel", { taskIds: [1, 2] });
    expect(cancelled.json()).toEqual({ cancelled: 2 });
    const heartbeat = await call(fixture, "POST", "/heartbeat", { agentId: "a1", attemptIds: [attemptId] });
    expect(heartbeat.json()).toEqual({ stale: [attemptId] });
    expect((await finish(fixture, "a1", attemptId, success)).json()).toMatchObject({ accepted: false });
    expect(await taskStates(fixture)).toEqual(["cancelled", "cancelled", "pending"]);

    const third = await lease(fixture, "a1");
    expect(third.lease?.task.id).toBe(3);
    const byPhase = await call(fixture, "POST", "/cancel", { phase: "main" });
    expect(byPhase.json()).toEqual({ cancelled: 1 });
    expect(await call(fixture, "POST", "/cancel", { phase: "main" }).then((r) => r.json())).toEqual({
      cancelled: 0,
    });
    // A phase the sweep lacks is named, as retry names it, not "0 cancelled".
    const unknown = await call(fixture, "POST", "/cancel", { phase: "mian" });
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json().error).toMatch(/^unknown phase mian \(phases: main\)/);
    expect((await finish(fixture, "a1", third.lease?.attemptId as number, success)).json()).toMatchObject({
      accepted: false,
    });
    expect(await lease(fixture, "a1", 5000)).toMatchObject({ lease: null, leases: [], done: true });
    await fixture.server.coordinator.drainResults();
    expect(csvRows(fixture.dir)).toEqual([]);
    const status = (await call(fixture, "GET", "/status")).json();
    expect(status).toMatchObject({ unique: 3, cancelled: 3, succeeded: 0, running: 0, pending: 0 });
  });
});

describe("POST /configs", () => {
  it("adds tasks to the live sweep; a bad config is a 400 naming file:line and adds nothing", async () => {
    const fixture = await serve(simpleSweep(2));
    await register(fixture, "a1", { slots: 8 });
    const extra = join(fixture.dir, "extra.yaml");
    const text = "command: echo {y}\nextra:\n  output_dir: out2\n  combinations:\n    - y: [1, 2, 3]\n";
    const added = await call(fixture, "POST", "/configs", { files: [{ path: extra, text }] });
    expect(added.statusCode, added.body).toBe(200);
    expect(added.json()).toMatchObject({ added: 3, unique: 5 });
    expect((await call(fixture, "GET", "/status")).json()).toMatchObject({ unique: 5, pending: 5 });

    const broken = "command: echo {y}\nextra2:\n  output_dir: out3\n  combinations:\n    - y: []\n";
    const bad = join(fixture.dir, "bad.yaml");
    const error = expectError(
      await call(fixture, "POST", "/configs", { files: [{ path: bad, text: broken }] }),
      400,
      fixture.warnings.join("\n"),
    );
    expect(error, fixture.warnings.join("\n")).toContain(`${bad}:5`);
    const unknownKey = "extra3:\n  output_dir: out3\n  combinatons:\n    - y: [1]\n";
    expect(
      expectError(await call(fixture, "POST", "/configs", { files: [{ path: bad, text: unknownKey }] }), 400),
    ).toContain(`${bad}:3`);
    expect((await call(fixture, "GET", "/status")).json()).toMatchObject({ unique: 5, pending: 5 });

    // Re-adding the same file with a changed grid replaces it, and the first config stays.
    const again = await call(fixture, "POST", "/configs", {
      files: [{ path: extra, text: text.replace("[1, 2, 3]", "[1, 2, 3, 4]") }],
    });
    expect(again.json()).toMatchObject({ added: 1, unique: 6 });
    const leased: unknown[] = [];
    for (;;) {
      const answer = await lease(fixture, "a1", 0, capacityOf({ slots: 8 }));
      if (!answer.lease) break;
      leased.push(answer.lease.task.params);
    }
    expect(leased).toEqual([{ x: 1 }, { x: 2 }, { y: 1 }, { y: 2 }, { y: 3 }, { y: 4 }]);
  });

  it("serialises concurrent adds so neither drops the other's tasks", async () => {
    const fixture = await serve(simpleSweep(1));
    const files = ["p", "q", "r"].map((name) => ({
      path: join(fixture.dir, `${name}.yaml`),
      text: `command: echo {v}\n${name}:\n  output_dir: out_${name}\n  combinations:\n    - v: [${name}1, ${name}2]\n`,
    }));
    for (const file of files) writeFileSync(file.path, file.text);
    const answers = await Promise.all(
      files.map((file) => call(fixture, "POST", "/configs", { files: [file] })),
    );
    for (const answer of answers) expect(answer.statusCode, answer.body).toBe(200);
    expect((await call(fixture, "GET", "/status")).json()).toMatchObject({ unique: 7, pending: 7 });
  });
});

describe("task logs", () => {
  it("appends streamed chunks once and serves them from GET /tasks/:id/log", async () => {
    const fixture = await serve(simpleSweep(1));
    await register(fixture, "a1");
    const attemptId = (await lease(fixture, "a1")).lease?.attemptId as number;
    expect(
      (await call(fixture, "POST", `/attempts/${attemptId}/started`, { agentId: "a1", pid: 4321 })).json(),
    ).toEqual({
      ok: true,
    });
    const chunk = (offset: number, text: string) =>
      call(fixture, "POST", `/attempts/${attemptId}/log`, { agentId: "a1", offset, text });
    expect((await chunk(0, "hello\n")).statusCode).toBe(200);
    await chunk(6, "world\n");
    await chunk(0, "hello\n"); // re-sent
    await chunk(6, "world\n"); // re-sent
    await chunk(3, "lo\nworld\nagain\n"); // overlaps what arrived
    const log = await call(fixture, "GET", "/tasks/1/log", undefined, viewerAuth, {
      remoteAddress: "10.9.9.9",
    });
    expect(log.statusCode).toBe(200);
    expect(log.headers["content-type"]).toMatch(/^text\/plain/);
    expect(log.body).toBe("hello\nworld\nagain\n");
    expect(log.headers["x-labsweep-attempt"]).toBe("1");
    expect(log.headers["x-labsweep-attempt-ended"]).toBe("0");

    await finish(fixture, "a1", attemptId, success);
    const ended = await call(fixture, "GET", "/tasks/1/log", undefined, viewerAuth);
    expect(ended.body).toBe("hello\nworld\nagain\n");
    expect(ended.headers["x-labsweep-attempt-ended"]).toBe("1");
    expect((await call(fixture, "GET", "/tasks/1/log?attempt=1", undefined, viewerAuth)).body).toBe(
      "hello\nworld\nagain\n",
    );
    expectError(await call(fixture, "GET", "/tasks/1/log?attempt=2", undefined, viewerAuth), 404);
    expectError(await call(fixture, "GET", "/tasks/99/log", undefined, viewerAuth), 404);
    expectError(await call(fixture, "GET", "/tasks/99", undefined, viewerAuth), 404);
  });
});

describe("robustness", () => {
  it("survives 200 random garbage requests and then serves a normal one", async () => {
    const fixture = await serve(simpleSweep(3));
    await register(fixture, "a1");
    await lease(fixture, "a1");
    // FUZZ_SEED=n replays another sequence (30 seeds passed when this was written).
    const random = mulberry32(Number(process.env.FUZZ_SEED ?? 20_240_601));
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
    const text = (length: number): string =>
      Array.from({ length }, () => String.fromCharCode(Math.floor(random() * 0x3000))).join("");
    const paths = [
      "/agents",
      "/lease",
      "/heartbeat",
      "/attempts/1/started",
      "/attempts/1/finish",
      "/attempts/1/log",
      "/attempts/999999999999999/finish",
      "/attempts/-1/finish",
      "/attempts/%ZZ/finish",
      "/channel",
      "/channel?agentId=",
      "/cancel",
      "/retry",
      "/configs",
      "/status",
      "/agents?x=1",
      "/tasks/1",
      "/tasks/1/log?attempt=abc",
      "/tasks/0/log",
      "/tasks/%00",
      "/health",
      "/../../etc/passwd",
      "",
      "/",
    ];
    const values = (depth: number): unknown => {
      const kind = Math.floor(random() * (depth > 3 ? 5 : 8));
      if (kind === 0) return null;
      if (kind === 1) return random() * 1e12 - 5e11;
      if (kind === 2) return text(Math.floor(random() * 20));
      if (kind === 3) return random() < 0.5;
      if (kind === 4) return Math.floor(random() * 10);
      if (kind === 5) return Array.from({ length: Math.floor(random() * 4) }, () => values(depth + 1));
      const keys = [
        "agentId",
        "capacity",
        "waitMs",
        "attemptIds",
        "outcome",
        "kind",
        "files",
        "path",
        "text",
      ];
      return Object.fromEntries(
        Array.from({ length: Math.floor(random() * 5) }, () => [pick(keys), values(depth + 1)]),
      );
    };
    const bodies = (): string | undefined => {
      const kind = Math.floor(random() * 7);
      if (kind === 0) return undefined;
      if (kind === 1) return text(Math.floor(random() * 200));
      if (kind === 2) return JSON.stringify(values(0));
      if (kind === 3) return `${"[".repeat(5000)}${"]".repeat(5000)}`;
      if (kind === 4) return JSON.stringify({ agentId: "a1", capacity: values(1), waitMs: values(1) });
      if (kind === 5) return JSON.stringify({ agentId: "a1", outcome: values(1), offset: 0, text: "x" });
      return JSON.stringify(values(0)).slice(0, 10);
    };
    const contentTypes = [
      "application/json",
      "application/json; charset=utf-8",
      "application/json; charset=latin1",
      "text/plain",
      "multipart/form-data; boundary=x",
      "",
      "application/x-www-form-urlencoded",
    ];
    const auths = [
      `Bearer ${AGENT_TOKEN}`,
      `Bearer ${AGENT_TOKEN}`,
      `Bearer ${AGENT_TOKEN}`,
      `Bearer ${VIEWER_TOKEN}`,
      "Bearer",
      text(30),
      "",
    ];
    const statuses = new Map<number, number>();
    for (let index = 0; index < 200; index++) {
      const headers: Record<string, string> = {};
      const auth = pick(auths);
      if (auth) headers.authorization = auth;
      const type = pick(contentTypes);
      if (type) headers["content-type"] = type;
      if (random() < 0.2)
        headers[`x-${Math.floor(random() * 1000)}`] = "v".repeat(Math.floor(random() * 100));
      if (random() < 0.1) headers["content-encoding"] = pick(["gzip", "br", "identity"]);
      const method = pick([
        "POST",
        "POST",
        "POST",
        "POST",
        "POST",
        "GET",
        "GET",
        "GET",
        "PUT",
        "DELETE",
        "HEAD",
      ] as const);
      const body = method === "GET" || method === "HEAD" ? undefined : bodies();
      const prefix = random() < 0.9 ? API_PREFIX : pick(["", "/api", "/api/v2", "/api/v1/"]);
      const response = await fixture.server.app.inject({
        method,
        url: `${prefix}${pick(paths)}` || "/",
        headers,
        remoteAddress: pick(["127.0.0.1", "10.0.0.1", "::1", "203.0.113.9"]),
        ...(body === undefined ? {} : { payload: body }),
      });
      statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1);
      expect(response.statusCode, `${method} ${prefix} → ${response.body}`).toBeLessThan(500);
      if (response.statusCode >= 400 && method !== "HEAD")
        expect(typeof response.json().error).toBe("string");
    }
    // The barrage reached the handlers and validators, not just the router.
    expect(statuses.get(400)).toBeGreaterThan(5);
    expect(statuses.get(200)).toBeGreaterThan(0);
    expect(fixture.warnings.filter((warning) => /internal|Error/.test(warning))).toEqual([]);
    // Still serving, and still consistent.
    await register(fixture, "a2");
    const answer = await lease(fixture, "a2");
    expect(answer.lease?.task.id).toBe(2);
    expect((await call(fixture, "GET", "/status")).json()).toMatchObject({
      unique: 3,
      running: 2,
      pending: 1,
    });
  });
});
