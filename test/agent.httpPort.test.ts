/**
 * The agent's side of the HTTP API against a real network peer on 127.0.0.1 (a minimal
 * node:http server answering just what each test is about): bearer token, retries with backoff
 * on network errors and 5xx, failover between URLs, 401 at once, long-poll leases, heartbeats,
 * re-registration, and the event channel. The CLI tests run the built CLI (`npm run build`).
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { holdChannel } from "../src/agent/channel.js";
import { CoordinatorClient, HttpError, UnauthorizedError } from "../src/agent/httpClient.js";
import { HttpPort } from "../src/agent/httpPort.js";
import { Outbox } from "../src/agent/outbox.js";
import type { Capacity } from "../src/protocol/capacity.js";
import type { ChannelEvent } from "../src/protocol/http.js";
import type { Lease } from "../src/protocol/interfaces.js";
import { collect, runCli, startCli, tempDir } from "./helpers/cli.js";
import { fakeGpuEnv } from "./helpers/fakeGpus.js";
import { deadUrl, json, startPeer } from "./helpers/peer.js";

const TOKEN = "secret-token";

function client(servers: string[], warnings: string[] = []): CoordinatorClient {
  return new CoordinatorClient({ servers, token: TOKEN, warn: (line) => warnings.push(line) });
}

function port(coordinator: CoordinatorClient, options: { slots?: number } = {}): HttpPort {
  const outbox = new Outbox(join(tempDir(), "outbox"), async () => "sent");
  return new HttpPort(coordinator, { agentId: "agent-1", slots: options.slots ?? 1, outbox });
}

const idle: Capacity = {
  freeSlots: 1,
  freeCpus: Number.POSITIVE_INFINITY,
  gpus: [],
  hasGpus: false,
  tags: [],
};

const leased: Lease = {
  attemptId: 7,
  attemptNumber: 1,
  gpuIds: [],
  placements: [{ phase: "p", outputDir: "/tmp/out" }],
  task: {
    id: 3,
    signature: "sig",
    params: { x: 1 },
    command: "true",
    cwd: "/tmp",
    configFile: "/tmp/sweep.yaml",
    policy: {
      retries: 0,
      maxLost: 3,
      timeoutMs: null,
      backoffMs: 1000,
      resources: { gpus: 0, gpuMemoryGb: 0, cpus: 1, tags: [] },
      launcher: null,
    },
    state: "running",
    attempts: 0,
  },
};

const registration = { leaseMs: 12_000, heartbeatMs: 3000, openAttempts: [] };

describe("the HTTP client", () => {
  it("sends the bearer token and JSON under /api/v1", async () => {
    const peer = await startPeer((_request, response) => json(response, 200, registration));
    const answer = await client([peer.url]).call("POST", "/agents", { agentId: "a" });
    expect(answer).toEqual(registration);
    expect(peer.requests).toEqual([
      expect.objectContaining({
        method: "POST",
        url: "/api/v1/agents",
        authorization: `Bearer ${TOKEN}`,
        body: { agentId: "a" },
      }),
    ]);
  });

  it("throws UnauthorizedError on 401 at once, without retrying", async () => {
    const peer = await startPeer((_request, response) =>
      json(response, 401, { error: "missing or wrong token" }),
    );
    const started = Date.now();
    const call = client([peer.url]).call("POST", "/agents", {});
    await expect(call).rejects.toBeInstanceOf(UnauthorizedError);
    await expect(call).rejects.toThrow(
      /rejected the token \(401: missing or wrong token\); check LABSWEEP_TOKEN or --token-file/,
    );
    expect(peer.requests).toHaveLength(1);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it("retries 5xx with backoff 0.5 s, then 1 s, and returns the answer", async () => {
    let calls = 0;
    const peer = await startPeer((_request, response) => {
      calls++;
      if (calls <= 2) json(response, 503, { error: "busy" });
      else json(response, 200, { ok: true });
    });
    const warnings: string[] = [];
    expect(await client([peer.url], warnings).call("GET", "/status")).toEqual({ ok: true });
    const [first, second, third] = peer.requests.map((request) => request.at) as [number, number, number];
    expect(second - first).toBeGreaterThanOrEqual(450);
    expect(second - first).toBeLessThan(1200);
    expect(third - second).toBeGreaterThanOrEqual(950);
    expect(third - second).toBeLessThan(2000);
    expect(warnings[0]).toMatch(
      /cannot reach the coordinator at http:\/\/127\.0\.0\.1:\d+ \(HTTP 503: busy\); retrying/,
    );
    expect(warnings.at(-1)).toMatch(/reached the coordinator at .* again/);
  });

  it("does not retry other 4xx: HttpError with the coordinator's sentence", async () => {
    const peer = await startPeer((_request, response) =>
      json(response, 409, { error: "attempt 7 belongs to another agent" }),
    );
    const call = client([peer.url]).call("POST", "/attempts/7/finish", {});
    await expect(call).rejects.toBeInstanceOf(HttpError);
    await expect(call).rejects.toMatchObject({ status: 409, detail: "attempt 7 belongs to another agent" });
    expect(peer.requests).toHaveLength(1);
  });

  it("fails over to the next URL when one cannot be reached, and stays there", async () => {
    const dead = await deadUrl();
    const live = await startPeer((_request, response) => json(response, 200, { ok: true }));
    const warnings: string[] = [];
    const coordinator = client([dead.url, live.url], warnings);
    const started = Date.now();
    await coordinator.call("GET", "/status");
    expect(Date.now() - started).toBeLessThan(1500); // one backoff of 0.5 s
    expect(warnings[0]).toContain(`cannot reach the coordinator at ${dead.url} (ECONNREFUSED)`);
    expect(warnings[0]).toContain(`trying ${live.url} next`);
    expect(coordinator.server).toBe(live.url);
    const again = Date.now();
    await coordinator.call("GET", "/status");
    expect(Date.now() - again).toBeLessThan(300);
    expect(live.requests).toHaveLength(2);
  });

  it("treats a request that gets no answer in time as a network error", async () => {
    let calls = 0;
    const peer = await startPeer((_request, response) => {
      if (++calls === 1) return; // never answers
      json(response, 200, { ok: true });
    });
    const warnings: string[] = [];
    const coordinator = new CoordinatorClient({
      servers: [peer.url],
      token: TOKEN,
      warn: (line) => warnings.push(line),
    });
    expect(await coordinator.call("GET", "/status", undefined, { timeoutMs: 300 })).toEqual({ ok: true });
    expect(warnings[0]).toMatch(/no answer within 0\.3 s/);
  });

  it("waits for a coordinator that is down, and carries on when it comes up", async () => {
    const dead = await deadUrl();
    const warnings: string[] = [];
    const call = client([dead.url], warnings).call("POST", "/agents", {});
    await new Promise((resolve) => setTimeout(resolve, 1200));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(
      /cannot reach the coordinator at .* \(ECONNREFUSED\); retrying with backoff \(0\.5 s doubling to 10 s\)/,
    );
    await startPeer((_request, response) => json(response, 200, registration), dead.port);
    expect(await call).toEqual(registration);
    expect(warnings.at(-1)).toMatch(new RegExp(`reached the coordinator at ${dead.url} again after \\d`));
  });

  it("a request waiting out a long backoff goes again as soon as another gets through", async () => {
    // A lease asleep in its backoff once missed a restarted coordinator's whole life (it finished
    // the sweep and exited within the sleep), and the agent retried a dead URL for ever after.
    const dead = await deadUrl();
    const coordinator = new CoordinatorClient({
      servers: [dead.url],
      token: TOKEN,
      minBackoffMs: 20_000,
      warn: () => undefined,
    });
    const asleep = coordinator.call("POST", "/lease", {});
    await new Promise((resolve) => setTimeout(resolve, 300)); // refused once: now in its 20 s backoff
    await startPeer((_request, response) => json(response, 200, { ok: true }), dead.port);
    const started = Date.now();
    expect(await coordinator.call("GET", "/status")).toEqual({ ok: true });
    expect(await asleep).toEqual({ ok: true });
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("gives up after the retries asked for", async () => {
    const dead = await deadUrl();
    const call = client([dead.url]).call("POST", "/heartbeat", {}, { retries: 0 });
    await expect(call).rejects.toThrow(/cannot reach the coordinator \(ECONNREFUSED\)/);
  });

  it("stops retrying when the caller's signal aborts", async () => {
    const dead = await deadUrl();
    const stop = new AbortController();
    const call = client([dead.url]).call("POST", "/agents", {}, { signal: stop.signal });
    setTimeout(() => stop.abort(), 200);
    await expect(call).rejects.toMatchObject({ name: "AbortError" });
  });
});

describe("the HTTP port", () => {
  it("long-polls a lease: the task arrives within milliseconds of existing", async () => {
    let release: (() => void) | null = null;
    const peer = await startPeer((request, response) => {
      if (request.url !== "/api/v1/lease") return json(response, 404, { error: "no" });
      release = () => json(response, 200, { lease: leased, done: false });
    });
    const leasing = port(client([peer.url])).lease({ capacity: idle });
    while (!release) await new Promise((resolve) => setTimeout(resolve, 10));
    const madeAt = Date.now();
    (release as () => void)();
    const [claim] = await leasing;
    expect(Date.now() - madeAt).toBeLessThan(250);
    expect(claim).toMatchObject({
      attemptId: 7,
      attemptNumber: 1,
      task: { id: 3, command: "true", state: "running" },
    });
    // Idle (every slot free): it may wait long. "No CPU limit" travels as null.
    expect(peer.requests[0]?.body).toEqual({
      agentId: "agent-1",
      capacity: { freeSlots: 1, freeCpus: null, gpus: [], hasGpus: false, tags: [] },
      waitMs: 25_000,
      max: 1,
      reports: [],
    });
  });

  it("waits only briefly while tasks run, so capacity they free is offered soon", async () => {
    const peer = await startPeer((_request, response) => json(response, 200, { lease: null, done: false }));
    await port(client([peer.url]), { slots: 2 }).lease({ capacity: { ...idle, freeSlots: 1, freeCpus: 1 } });
    expect(peer.requests[0]?.body).toMatchObject({ waitMs: 2000 });
  });

  it("a held lease ends at once when the agent stops", async () => {
    const peer = await startPeer(() => undefined); // holds every request
    const stop = new AbortController();
    const leasing = port(client([peer.url])).lease({ capacity: idle, signal: stop.signal });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const stoppedAt = Date.now();
    stop.abort();
    expect(await leasing).toEqual([]);
    expect(Date.now() - stoppedAt).toBeLessThan(200);
  });

  it("says done when the coordinator does, unless told to stay", async () => {
    const peer = await startPeer((_request, response) => json(response, 200, { lease: null, done: true }));
    const leaving = port(client([peer.url]));
    expect(await leaving.lease({ capacity: idle })).toEqual([]);
    expect(await leaving.isFinished()).toBe(true);
    const outbox = new Outbox(join(tempDir(), "outbox"), async () => "sent");
    const staying = new HttpPort(client([peer.url]), { agentId: "a", slots: 1, outbox, stay: true });
    await staying.lease({ capacity: idle });
    expect(await staying.isFinished()).toBe(false);
  });

  it("heartbeats return the stale attempts asked about, and [] when the coordinator is unreachable", async () => {
    const peer = await startPeer((_request, response) => json(response, 200, { stale: [2, 99] }));
    expect(await port(client([peer.url])).heartbeat([1, 2])).toEqual([2]);
    expect(peer.requests[0]?.body).toEqual({ agentId: "agent-1", attemptIds: [1, 2] });
    const dead = await deadUrl();
    const started = Date.now();
    expect(await port(client([dead.url])).heartbeat([1, 2])).toEqual([]);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it("reports a task's pid once it has run a quarter second; a shorter task costs no request", async () => {
    const peer = await startPeer((_request, response) => json(response, 200, { ok: true }));
    const agentPort = port(client([peer.url]));
    await agentPort.started(1, 4321, "/tmp/log");
    await agentPort.started(2, 4322, "/tmp/log");
    await agentPort.finish(2, { outcome: { kind: "succeeded", metrics: {}, wallSeconds: 0.05 } });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(peer.requests.filter((request) => request.url.endsWith("/started"))).toEqual([]);
    const deadline = Date.now() + 2000;
    while (peer.requests.length === 0 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 10));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const notices = peer.requests.filter((request) => request.url.endsWith("/started"));
    expect(notices.map((request) => [request.url, request.body])).toEqual([
      ["/api/v1/attempts/1/started", { agentId: "agent-1", pid: 4321 }],
    ]);
  });

  it("fsyncs the report of a task that ran a second or more; a shorter one's is written whole, not fsynced", async () => {
    const puts: Array<{ attemptId: number; durable: boolean | undefined }> = [];
    class Recording extends Outbox {
      override async put(record: Parameters<Outbox["put"]>[0], options: { durable?: boolean } = {}) {
        puts.push({ attemptId: record.attemptId, durable: options.durable });
        await super.put(record, options);
      }
    }
    const outbox = new Recording(join(tempDir(), "outbox"), async () => "sent");
    const agentPort = new HttpPort(client(["http://127.0.0.1:1"]), { agentId: "agent-1", slots: 1, outbox });
    await agentPort.finish(1, { outcome: { kind: "succeeded", metrics: {}, wallSeconds: 0.01 } });
    await agentPort.finish(2, { outcome: { kind: "succeeded", metrics: { x: 1 }, wallSeconds: 30 } });
    await agentPort.finish(3, { outcome: { kind: "interrupted", error: "stopped" } });
    expect(puts).toEqual([
      { attemptId: 1, durable: false },
      { attemptId: 2, durable: true },
      { attemptId: 3, durable: true },
    ]);
    expect(await outbox.flush({ timeoutMs: 5000 })).toBe(true);
  });

  it("registers again when the coordinator has forgotten the agent", async () => {
    let registered = 0;
    const peer = await startPeer((request, response) => {
      if (request.url === "/api/v1/agents") {
        registered++;
        return json(response, 200, registration);
      }
      if (registered < 2)
        return json(response, 409, {
          error: "unknown agent agent-1: register first (POST /agents)",
          code: "unknown_agent",
        });
      json(response, 200, { lease: leased, done: false });
    });
    const agentPort = port(client([peer.url]));
    await agentPort.register({
      agentId: "agent-1",
      name: "n",
      host: "h",
      pid: 1,
      slots: 1,
      cpus: 1,
      ramMb: 1,
      gpus: [],
      driverVersion: null,
      cudaVersion: null,
      tags: [],
      probes: {},
    });
    expect(await agentPort.lease({ capacity: idle })).toMatchObject([{ attemptId: 7 }]);
    expect(peer.requests.map((request) => request.url)).toEqual([
      "/api/v1/agents",
      "/api/v1/lease",
      "/api/v1/agents",
      "/api/v1/lease",
    ]);
  });

  it("reports a 401 in a heartbeat as fatal", async () => {
    const peer = await startPeer((_request, response) => json(response, 401, { error: "wrong token" }));
    const fatal: Error[] = [];
    const outbox = new Outbox(join(tempDir(), "outbox"), async () => "sent");
    const agentPort = new HttpPort(client([peer.url]), {
      agentId: "a",
      slots: 1,
      outbox,
      onFatal: (error) => fatal.push(error),
    });
    expect(await agentPort.heartbeat([1])).toEqual([]);
    expect(fatal).toHaveLength(1);
    expect(fatal[0]).toBeInstanceOf(UnauthorizedError);
  });
});

describe("the event channel", () => {
  it("passes on server-sent events and reconnects when the connection drops", async () => {
    let connections = 0;
    const peer = await startPeer((_request, response) => {
      connections++;
      response.writeHead(200, { "content-type": "text/event-stream" });
      response.write(`data: ${JSON.stringify({ type: "hello", serverTime: 1 })}\n\n`);
      response.write(": keep-alive\n\n");
      // One event split across writes, with CRLF line ends.
      response.write('data: {"type":"cancel",');
      response.write(`"attemptIds":[${connections}]}\r\n\r\n`);
      if (connections === 1) response.end(); // the first connection drops
    });
    const events: ChannelEvent[] = [];
    const stop = new AbortController();
    const holding = holdChannel(client([peer.url]), {
      agentId: "agent 1",
      signal: stop.signal,
      onEvent: (event) => events.push(event),
      warn: () => undefined,
    });
    const deadline = Date.now() + 5000;
    while (events.length < 4 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 20));
    stop.abort();
    await holding;
    expect(events).toEqual([
      { type: "hello", serverTime: 1 },
      { type: "cancel", attemptIds: [1] },
      { type: "hello", serverTime: 1 },
      { type: "cancel", attemptIds: [2] },
    ]);
    expect(peer.requests[0]?.url).toBe("/api/v1/channel?agentId=agent%201");
  });
});

describe("labsweep agent (CLI)", () => {
  const agentEnv = (): NodeJS.ProcessEnv => ({ ...fakeGpuEnv([]), LABSWEEP_GPU_LOCK_DIR: tempDir() });

  it("exits 2 at once with a clear message when the token is rejected", async () => {
    const peer = await startPeer((_request, response) =>
      json(response, 401, { error: "missing or wrong token" }),
    );
    const started = Date.now();
    const result = await runCli(["agent", "--server", peer.url, "--token", "wrong", "--state", tempDir()], {
      env: agentEnv(),
    });
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toContain(`the coordinator at ${peer.url} rejected the token (401`);
    expect(result.stderr).toContain("check LABSWEEP_TOKEN or --token-file");
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("takes the token from LABSWEEP_TOKEN, and needs one", async () => {
    const peer = await startPeer((_request, response) => json(response, 401, { error: "wrong token" }));
    const fromEnv = await runCli(["agent", "--server", peer.url, "--state", tempDir()], {
      env: { ...agentEnv(), LABSWEEP_TOKEN: "from-env" },
    });
    expect(fromEnv.code).toBe(2);
    expect(peer.requests[0]?.authorization).toBe("Bearer from-env");
    const none = await runCli(["agent", "--server", peer.url, "--state", tempDir()], {
      env: { ...agentEnv(), LABSWEEP_TOKEN: "" },
    });
    expect(none.code).toBe(2);
    expect(none.stderr).toContain(
      "needs the coordinator's agent token: LABSWEEP_TOKEN in the environment, or --token-file FILE",
    );
  });

  it("waits for a coordinator that is down, saying so, and stops on Ctrl-C", async () => {
    const dead = await deadUrl();
    const child = startCli(["agent", "--server", dead.url, "--token", TOKEN, "--state", tempDir()], {
      env: agentEnv(),
    });
    const result = collect(child, 20_000);
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const deadline = Date.now() + 10_000;
    while (!stderr.includes("cannot reach the coordinator") && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 50));
    child.kill("SIGINT");
    const ended = await result;
    expect(ended.stderr).toContain(
      `cannot reach the coordinator at ${dead.url} (ECONNREFUSED); retrying with backoff (0.5 s doubling to 10 s)`,
    );
    expect(ended.code).toBe(130);
  });

  it("rejects a malformed --server or --probe as bad input", async () => {
    const bad = await runCli(["agent", "--server", "ftp://x", "--token", "t"], { env: agentEnv() });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--server URLs are http:// or https://");
    const probe = await runCli(["agent", "--server", "x:1", "--token", "t", "--probe", "nope"], {
      env: agentEnv(),
    });
    expect(probe.code).toBe(2);
    expect(probe.stderr).toContain("--probe: a probe is NAME=COMMAND");
  });
});
