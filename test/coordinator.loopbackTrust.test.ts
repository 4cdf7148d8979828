/**
 * Loopback trust: reads need no token only where the server trusts loopback (`labsweep run`,
 * `serve --trust-loopback`), and then only when the peer is loopback *and* the Host header is
 * exactly a loopback literal or `localhost` — a DNS-rebinding page reaches us from loopback but
 * names its own host. Checked with Fastify inject and over real HTTP with forged Host headers.
 */
import { request } from "node:http";
import { connect } from "node:net";
import type { InjectOptions } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { isLoopbackHost } from "../src/http/access.js";
import { API_PREFIX } from "../src/protocol/http.js";
import { type Fixture, simpleSweep, startFixture, viewerAuth } from "./helpers/coordinatorFixture.js";

const fixtures: Fixture[] = [];
afterEach(async () => {
  await Promise.all(fixtures.splice(0).map((fixture) => fixture.close()));
});

async function serve(trustLoopback: boolean): Promise<Fixture> {
  const fixture = await startFixture(simpleSweep(2), { trustLoopback });
  fixtures.push(fixture);
  return fixture;
}

/** Every route a viewer may call. */
const VIEWER_ROUTES = [
  `${API_PREFIX}/status`,
  `${API_PREFIX}/agents`,
  `${API_PREFIX}/tasks/1`,
  `${API_PREFIX}/tasks/1/log`,
  "/",
  "/assets/app.js",
  `${API_PREFIX}/dashboard/overview`,
  `${API_PREFIX}/dashboard/machines`,
  `${API_PREFIX}/dashboard/tasks`,
  `${API_PREFIX}/dashboard/tasks/1`,
  `${API_PREFIX}/dashboard/fields`,
  `${API_PREFIX}/dashboard/results`,
  `${API_PREFIX}/dashboard/results.csv`,
];

const GOOD_HOSTS = [
  "127.0.0.1",
  "127.0.0.1:7070",
  "127.1.2.3:80",
  "[::1]",
  "[::1]:7070",
  "localhost",
  "localhost:7070",
  "LOCALHOST:7070",
];

const BAD_HOSTS = [
  "127.0.0.1.evil.example",
  "127.0.0.1.evil.example:7070",
  "localhost.evil",
  "localhost.evil:7070",
  "evil.localhost",
  "evil.example",
  "127.0.0.256",
  "127.1",
  "0x7f.0.0.1",
  "[::1].evil",
  "[::1]:7070.evil",
  "localhost:7070@evil.example",
  "localhost:",
  "localhost:123456",
  "",
  " localhost",
  "[::ffff:127.0.0.1]",
];

function inject(fixture: Fixture, url: string, host: string, remoteAddress = "127.0.0.1") {
  return fixture.server.app.inject({ method: "GET", url, headers: { host }, remoteAddress } as InjectOptions);
}

describe("isLoopbackHost", () => {
  it("accepts exactly a loopback literal or localhost, with an optional port", () => {
    for (const host of GOOD_HOSTS) expect(isLoopbackHost(host), host).toBe(true);
    for (const host of BAD_HOSTS) expect(isLoopbackHost(host), host).toBe(false);
    expect(isLoopbackHost(undefined)).toBe(false);
  });
});

describe("loopback trust (inject)", () => {
  it("lets a trusting server answer loopback peers naming a loopback host, on every viewer route", async () => {
    const fixture = await serve(true);
    for (const url of VIEWER_ROUTES)
      for (const host of GOOD_HOSTS) {
        const response = await inject(fixture, url, host);
        // /tasks/1/log is 404 before the task's first attempt: what matters is that it is no 401.
        expect(response.statusCode, `${url} Host: ${host}: ${response.body.slice(0, 200)}`).not.toBe(401);
        expect(response.statusCode, `${url} Host: ${host}`).toBeLessThan(500);
      }
  });

  it("refuses any other Host from loopback, on every viewer route (DNS rebinding)", async () => {
    const fixture = await serve(true);
    // (inject puts its own Host in place of an empty one; the real-HTTP test sends none at all.)
    for (const url of VIEWER_ROUTES)
      for (const host of BAD_HOSTS.filter(Boolean)) {
        const response = await inject(fixture, url, host);
        expect(response.statusCode, `${url} Host: ${JSON.stringify(host)}`).toBe(401);
      }
  });

  it("refuses a loopback Host from another peer", async () => {
    const fixture = await serve(true);
    for (const url of VIEWER_ROUTES)
      for (const remoteAddress of ["10.1.2.3", "::ffff:10.0.0.1", "2001:db8::1"]) {
        const response = await inject(fixture, url, "localhost:7070", remoteAddress);
        expect(response.statusCode, `${url} from ${remoteAddress}`).toBe(401);
      }
  });

  it("trusts no one for being on this machine unless asked (serve's default), yet takes tokens", async () => {
    const fixture = await serve(false);
    for (const url of VIEWER_ROUTES) {
      for (const host of GOOD_HOSTS)
        expect((await inject(fixture, url, host)).statusCode, `${url} Host: ${host}`).toBe(401);
      const withToken = await fixture.server.app.inject({
        method: "GET",
        url,
        headers: { ...viewerAuth, host: "127.0.0.1:7070" },
      } as InjectOptions);
      expect(withToken.statusCode, url).not.toBe(401);
    }
  });
});

/** A GET over real HTTP with a forged Host header. */
function forged(url: string, path: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method: "GET", headers: { host } }, (response) => {
      response.resume();
      response.on("end", () => resolve(response.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end();
  });
}

/** HTTP/1.0 allows a request without any Host header: its status code. */
function hostless(url: string, path: string): Promise<number> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), "127.0.0.1", () => socket.write(`GET ${path} HTTP/1.0\r\n\r\n`));
    let text = "";
    socket.on("data", (chunk: Buffer) => {
      text += chunk.toString("latin1");
    });
    socket.on("end", () => resolve(Number(/^HTTP\/1\.\d (\d{3})/.exec(text)?.[1] ?? 0)));
    socket.on("error", reject);
  });
}

describe("loopback trust (real HTTP)", () => {
  it("answers forged Host headers from a loopback socket with 401, true ones with 200", async () => {
    const fixture = await serve(true);
    const { url } = fixture.server;
    const port = new URL(url).port;
    for (const path of [
      `${API_PREFIX}/status`,
      `${API_PREFIX}/tasks/1`,
      "/",
      `${API_PREFIX}/dashboard/overview`,
    ]) {
      for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, "localhost"])
        expect(await forged(url, path, host), `${path} Host: ${host}`).toBe(200);
      for (const host of [`127.0.0.1.evil.example:${port}`, `localhost.evil:${port}`, "attacker.example"])
        expect(await forged(url, path, host), `${path} Host: ${host}`).toBe(401);
      expect(await hostless(url, path), `${path} without Host`).toBe(401);
    }
  });
});
