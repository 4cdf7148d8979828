/**
 * Viewers cannot exhaust the coordinator's memory: a log is served in pieces of at most 1 MiB
 * (a tail, `?offset=&limit=`, or an HTTP Range), `labsweep logs` follows by offsets, dashboard
 * event streams are capped in number, and a stream whose client does not read is dropped.
 */
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { connect, type Socket } from "node:net";
import { dirname } from "node:path";
import type { InjectOptions } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { LOG_RANGE_CAP } from "../src/coordinator/taskLogs.js";
import { attemptFiles } from "../src/protocol/attemptFiles.js";
import { API_PREFIX } from "../src/protocol/http.js";
import { runCli } from "./helpers/cli.js";
import {
  agentAuth,
  agentInfo,
  capacityOf,
  type Fixture,
  simpleSweep,
  sleep,
  startFixture,
  VIEWER_TOKEN,
  viewerAuth,
} from "./helpers/coordinatorFixture.js";

const fixtures: Fixture[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(fixtures.splice(0).map((fixture) => fixture.close()));
});

const MiB = 1024 * 1024;

async function serve(options: Parameters<typeof startFixture>[1] = {}): Promise<Fixture> {
  const fixture = await startFixture(simpleSweep(2), options);
  fixtures.push(fixture);
  return fixture;
}

/** Leases task 1 and writes `bytes` as its attempt's log, where the coordinator keeps it. */
async function taskWithLog(fixture: Fixture, bytes: Buffer): Promise<void> {
  const inject = (url: string, payload: object) =>
    fixture.server.app.inject({ method: "POST", url: `${API_PREFIX}${url}`, headers: agentAuth, payload });
  await inject("/agents", agentInfo("a1"));
  const leased = await inject("/lease", { agentId: "a1", capacity: capacityOf({ slots: 1 }), waitMs: 0 });
  expect(leased.json().lease.task.id).toBe(1);
  const { logPath } = attemptFiles(fixture.stateDir, 1, 1);
  mkdirSync(dirname(logPath), { recursive: true });
  writeFileSync(logPath, bytes);
}

function get(fixture: Fixture, url: string, headers: Record<string, string> = {}) {
  return fixture.server.app.inject({
    method: "GET",
    url: `${API_PREFIX}${url}`,
    headers: { ...viewerAuth, ...headers },
  } as InjectOptions);
}

/** 50 MiB of numbered lines: every piece is distinguishable from every other. */
function bigLog(): Buffer {
  const line = (n: number) => `line ${String(n).padStart(9, "0")} ${"x".repeat(44)}\n`; // 64 bytes
  const lines = (50 * MiB) / 64;
  const buffer = Buffer.alloc(50 * MiB);
  for (let n = 0; n < lines; n++) buffer.write(line(n), n * 64, "latin1");
  return buffer;
}

describe("task logs in bounded pieces", () => {
  it("serves a 50 MiB log as a 1 MiB tail, by offsets, and by Range — never more than 1 MiB at once", async () => {
    const fixture = await serve();
    const log = bigLog();
    await taskWithLog(fixture, log);
    expect(LOG_RANGE_CAP).toBe(MiB);

    const tail = await get(fixture, "/tasks/1/log");
    expect(tail.statusCode).toBe(200);
    expect(tail.rawPayload.length).toBe(MiB);
    expect(tail.rawPayload.equals(log.subarray(log.length - MiB))).toBe(true);
    expect(tail.headers["x-labsweep-log-offset"]).toBe(String(log.length - MiB));
    expect(tail.headers["x-labsweep-log-size"]).toBe(String(log.length));

    // A limit above the cap is held to it.
    const asked = await get(fixture, "/tasks/1/log?offset=0&limit=104857600");
    expect(asked.rawPayload.length).toBe(MiB);
    expect((await get(fixture, "/tasks/1/log?offset=100&limit=10")).body).toBe(
      log.subarray(100, 110).toString(),
    );

    // Following by offsets reads the whole log back, a piece at a time.
    const whole = createHash("sha256");
    let pieces = 0;
    for (let offset = 0; offset < log.length; pieces++) {
      const piece = await get(fixture, `/tasks/1/log?offset=${offset}`);
      expect(piece.rawPayload.length).toBeLessThanOrEqual(MiB);
      expect(piece.rawPayload.length).toBeGreaterThan(0);
      whole.update(piece.rawPayload);
      offset += piece.rawPayload.length;
    }
    expect(pieces).toBe(50);
    expect(whole.digest("hex")).toBe(createHash("sha256").update(log).digest("hex"));
    const past = await get(fixture, `/tasks/1/log?offset=${log.length + 5}`);
    expect(past.statusCode).toBe(200);
    expect(past.rawPayload.length).toBe(0);

    // HTTP Range: 206 with Content-Range, capped too; 416 past the end.
    const first = await get(fixture, "/tasks/1/log", { range: "bytes=0-99" });
    expect(first.statusCode).toBe(206);
    expect(first.headers["content-range"]).toBe(`bytes 0-99/${log.length}`);
    expect(first.body).toBe(log.subarray(0, 100).toString());
    const open = await get(fixture, "/tasks/1/log", { range: "bytes=1000-" });
    expect(open.statusCode).toBe(206);
    expect(open.rawPayload.length).toBe(MiB);
    expect(open.headers["content-range"]).toBe(`bytes 1000-${1000 + MiB - 1}/${log.length}`);
    const suffix = await get(fixture, "/tasks/1/log", { range: "bytes=-64" });
    expect(suffix.statusCode).toBe(206);
    expect(suffix.body).toBe(log.subarray(log.length - 64).toString());
    const huge = await get(fixture, "/tasks/1/log", { range: "bytes=-99999999999" });
    expect(huge.rawPayload.length).toBe(MiB);
    const beyond = await get(fixture, "/tasks/1/log", { range: `bytes=${log.length}-` });
    expect(beyond.statusCode).toBe(416);
    expect(beyond.headers["content-range"]).toBe(`bytes */${log.length}`);

    for (const query of ["offset=-1", "offset=abc", "limit=0", "offset=1e3", "attempt=x"]) {
      const bad = await get(fixture, `/tasks/1/log?${query}`);
      expect(bad.statusCode, query).toBe(400);
      expect(bad.json().error).toMatch(/whole number/);
    }
  });

  it("lets `labsweep logs` print a log larger than one piece whole, by offsets", async () => {
    const fixture = await serve();
    const log = bigLog().subarray(0, 3 * MiB + 123);
    await taskWithLog(fixture, log);
    const printed = await runCli(["logs", "1", "--server", fixture.server.url], {
      env: { LABSWEEP_VIEWER_TOKEN: VIEWER_TOKEN, LABSWEEP_TOKEN: "", LABSWEEP_SERVER: "" },
      timeoutMs: 30_000,
    });
    expect(printed.code, printed.stderr).toBe(0);
    expect(printed.stdout.length).toBe(log.length);
    expect(printed.stdout === log.toString("latin1")).toBe(true);
  });
});

/** Opens an event stream over a raw socket that never reads what the server sends. */
function rawStream(url: string): Promise<Socket> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), "127.0.0.1", () => {
      socket.pause(); // never read: what the server writes piles up in the kernel, then in Node
      socket.write(
        `GET ${API_PREFIX}/dashboard/events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${VIEWER_TOKEN}\r\n\r\n`,
        () => resolve(socket),
      );
    });
    sockets.push(socket);
    socket.on("error", reject);
  });
}

/** The status of a GET of the event stream over real HTTP (the body is left unread and dropped). */
function streamStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}${API_PREFIX}/dashboard/events`,
      { headers: { authorization: `Bearer ${VIEWER_TOKEN}` } },
      (response) => {
        resolve(response.statusCode ?? 0);
        response.destroy();
      },
    );
    req.on("error", reject);
    req.end();
  });
}

async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string,
  ms = 20_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function connections(fixture: Fixture): Promise<number> {
  return new Promise((resolve, reject) =>
    fixture.server.app.server.getConnections((error, count) => (error ? reject(error) : resolve(count))),
  );
}

describe("dashboard event streams", () => {
  it("holds at most 64 at once: the 65th gets 503, and a freed place can be taken again", async () => {
    const fixture = await serve();
    const held = await Promise.all(Array.from({ length: 64 }, () => rawStream(fixture.server.url)));
    await waitFor(async () => (await connections(fixture)) >= 64, "64 streams");
    expect(await streamStatus(fixture.server.url)).toBe(503);
    const refused = await fixture.server.app.inject({
      method: "GET",
      url: `${API_PREFIX}/dashboard/events`,
      headers: viewerAuth,
    });
    expect(refused.statusCode).toBe(503);
    expect(refused.json().error).toMatch(/64 dashboard event streams are open/);
    held[0]?.destroy();
    await waitFor(async () => (await streamStatus(fixture.server.url)) === 200, "a freed place");
  });

  it("drops a stream whose client does not read instead of buffering for it", async () => {
    const fixture = await serve({ streams: { bufferLimit: 64 * 1024 } });
    // Plenty to send: every machines event (at connect, then every 2 s) carries these readings.
    await fixture.server.app.inject({
      method: "POST",
      url: `${API_PREFIX}/agents`,
      headers: agentAuth,
      payload: agentInfo("gpu-box"),
    });
    const gpus = Array.from({ length: 512 }, (_, index) => ({
      index,
      utilizationPct: 50,
      memoryUsedMiB: 1000,
      memoryTotalMiB: 80_000,
    }));
    for (let at = 0; at < 120; at++) fixture.server.telemetry.record("gpu-box", at, gpus);

    await rawStream(fixture.server.url);
    await waitFor(() => fixture.warnings.some((line) => /dropped an event stream/.test(line)), "the drop");
    await waitFor(async () => (await connections(fixture)) === 0, "the socket closed by the server");
    // The server is fine, and a client that reads keeps its stream.
    expect(await streamStatus(fixture.server.url)).toBe(200);
  });
});
