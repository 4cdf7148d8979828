/**
 * Hostile input against every route of the coordinator's API, with Fastify inject and a seeded
 * generator (FUZZ_SEED=n replays another sequence): wrong types, huge numbers, deep nesting,
 * oversized bodies, unicode, prototype-pollution keys, hostile Host headers and tokens. Every
 * answer is below 500 and every 4xx is one clear JSON `{error}`; nothing pollutes a prototype;
 * the server still answers a normal request afterwards.
 */
import type { InjectOptions } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { API_PREFIX } from "../src/protocol/http.js";
import {
  ADMIN_TOKEN,
  AGENT_TOKEN,
  agentInfo,
  capacityOf,
  type Fixture,
  simpleSweep,
  startFixture,
  VIEWER_TOKEN,
  viewerAuth,
} from "./helpers/coordinatorFixture.js";
import { mulberry32 } from "./helpers/random.js";

const fixtures: Fixture[] = [];
afterEach(async () => {
  await Promise.all(fixtures.splice(0).map((fixture) => fixture.close()));
});

const SEED = Number(process.env.FUZZ_SEED ?? 20_261_207);
const CASES = 600;

type Random = () => number;
const pick = <T>(random: Random, items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;

const HOSTILE_KEYS = [
  "__proto__",
  "constructor",
  "prototype",
  "toString",
  "hasOwnProperty",
  "",
  "ü",
  "a.b",
  "$where",
];
const HOSTILE_STRINGS = [
  "",
  " ",
  "\u0000",
  "\ud800",
  "🎛️‍🔥",
  "ü".repeat(300),
  "'; DROP TABLE tasks; --",
  "../../../../etc/passwd",
  "%00%2e%2e",
  "{x}",
  "$(touch /tmp/pwned)",
  "a".repeat(70_000),
  "\r\nX-Injected: 1",
];
const HOSTILE_NUMBERS = [
  -1,
  0,
  1.5,
  -0,
  1e308,
  -1e308,
  2 ** 53 + 2,
  4096,
  4097,
  600_001,
  Number.MAX_SAFE_INTEGER,
];

/** A hostile JSON value: a primitive, a wrong type, or a nested structure. */
function hostileValue(random: Random, depth = 0): unknown {
  const kind = Math.floor(random() * (depth > 3 ? 5 : 8));
  switch (kind) {
    case 0:
      return pick(random, HOSTILE_NUMBERS);
    case 1:
      return pick(random, HOSTILE_STRINGS);
    case 2:
      return pick(random, [null, true, false]);
    case 3:
      return String(Math.floor(random() * 1000));
    case 4:
      return Math.floor(random() * 5);
    case 5:
      return Array.from({ length: Math.floor(random() * 4) }, () => hostileValue(random, depth + 1));
    default: {
      const object: Record<string, unknown> = {};
      for (let i = Math.floor(random() * 4); i > 0; i--)
        object[pick(random, HOSTILE_KEYS)] = hostileValue(random, depth + 1);
      return object;
    }
  }
}

/** A valid body for each POST route, to mutate: a case breaks one or more of its fields. */
function baseBodies(random: Random): Record<string, Record<string, unknown>> {
  return {
    "/agents": { ...agentInfo(`fuzz-reg-${Math.floor(random() * 1e9)}`) },
    "/lease": { agentId: "fuzz-never-registered", capacity: capacityOf(), waitMs: 0, max: 2 },
    "/heartbeat": { agentId: "fuzz-never-registered", attemptIds: [1] },
    "/attempts/1/started": { agentId: "fuzz-never-registered", pid: 12 },
    "/attempts/1/finish": {
      agentId: "fuzz-never-registered",
      outcome: { kind: "succeeded", metrics: { acc: 1 }, wallSeconds: 1 },
    },
    "/attempts/1/log": { agentId: "fuzz-never-registered", offset: 0, text: "x" },
    "/cancel": { taskIds: [3] },
    "/retry": { phase: "main" },
    "/configs": { files: [{ path: "/tmp/fuzz.yaml", text: "main:\n  combinations: []\n" }] },
  };
}

/** Raw payloads that are not (good) JSON. */
function rawPayload(random: Random): string {
  const deep = Math.floor(random() * 5000) + 10;
  return pick(random, [
    "{",
    "[1,2",
    '{"agentId": "a"',
    "\ufeff{}",
    "null",
    "[]",
    '"just a string"',
    "1e999999",
    `${"[".repeat(deep)}${"]".repeat(deep)}`,
    `${'{"a":'.repeat(deep)}1${"}".repeat(deep)}`,
    '{"__proto__": {"polluted": true}}',
    '{"constructor": {"prototype": {"polluted": true}}}',
    `{"agentId": "${"x".repeat(1024 * 1024 + 10)}"}`,
    "\u0000\u0001\u0002",
  ]);
}

function mutate(random: Random, body: Record<string, unknown>): Record<string, unknown> {
  const copy: Record<string, unknown> = structuredClone(body);
  for (let i = 1 + Math.floor(random() * 3); i > 0; i--) {
    const keys = Object.keys(copy);
    if (keys.length > 0 && random() < 0.7) copy[pick(random, keys)] = hostileValue(random);
    // defineProperty: an own "__proto__" key, as JSON.parse makes it, not a prototype change.
    else
      Object.defineProperty(copy, pick(random, HOSTILE_KEYS), {
        value: hostileValue(random),
        enumerable: true,
        writable: true,
        configurable: true,
      });
  }
  return copy;
}

const HOSTS = [
  "127.0.0.1",
  "localhost:7070",
  "127.0.0.1.evil.example",
  "localhost.evil",
  "[::1]:7070",
  "evil.example",
  "x".repeat(2000),
  "[::1",
  "127.0.0.1:99999999",
];

function authHeader(random: Random): Record<string, string> {
  // Half the cases carry a real token, so bodies get past the door to the schemas and handlers.
  if (random() < 0.5)
    return { authorization: `Bearer ${pick(random, [AGENT_TOKEN, VIEWER_TOKEN, ADMIN_TOKEN])}` };
  const token = pick(random, [
    AGENT_TOKEN,
    VIEWER_TOKEN,
    ADMIN_TOKEN,
    "",
    "nope",
    `${AGENT_TOKEN}x`,
    "a".repeat(10_000),
    "null",
  ]);
  return pick<Record<string, string>>(random, [
    { authorization: `Bearer ${token}` },
    { authorization: token },
    { authorization: `Basic ${token}` },
    { cookie: `labsweep_viewer=${token}` },
    { cookie: "labsweep_viewer=%E0%A4%A" },
    {},
  ]);
}

const GET_PATHS = [
  "/status",
  "/agents",
  "/health",
  "/tasks/1",
  "/tasks/0",
  "/tasks/-1",
  "/tasks/99999999999999999999",
  "/tasks/abc",
  "/tasks/1/log",
  "/tasks/1/log?offset=-5",
  "/tasks/1/log?offset=99999999999999999999&limit=0",
  "/tasks/1/log?attempt=__proto__",
  "/tasks/1/log?limit=1e9",
  "/dashboard/overview",
  "/dashboard/machines",
  "/dashboard/tasks?sort=__proto__&dir=sideways",
  "/dashboard/tasks?limit=1e309&after=%00",
  "/dashboard/tasks?p.__proto__=1&p.constructor=x&q=%F0%9F%92%A9",
  "/dashboard/tasks?state=constructor&phase=__proto__",
  "/dashboard/tasks/1",
  "/dashboard/tasks/1.5",
  "/dashboard/fields",
  "/dashboard/results?limit=-1&after=garbage",
  "/dashboard/plot?x=__proto__&y=constructor",
  "/dashboard/plot?x=x",
  "/dashboard/plot.csv?x=x&y=acc&series=__proto__",
  "/dashboard/results.csv?phase=%00",
];

describe("fuzzing the API", () => {
  it(`answers ${CASES} hostile requests (seed ${SEED}) with no 5xx, each 4xx a clear JSON error`, async () => {
    const fixture = await startFixture(simpleSweep(3));
    fixtures.push(fixture);
    const random = mulberry32(SEED);
    const prototypeKeys = Object.getOwnPropertyNames(Object.prototype).sort();
    for (let n = 0; n < CASES; n++) {
      const headers: Record<string, string> = { ...authHeader(random) };
      if (random() < 0.5) headers.host = pick(random, HOSTS);
      let request: InjectOptions;
      if (random() < 0.35) {
        const path = pick(random, GET_PATHS);
        if (random() < 0.3)
          headers.range = pick(random, ["bytes=0-", "bytes=-0", "bytes=5-1", "bytes=a-b", "bytes=0-1,4-5"]);
        request = { method: "GET", url: `${API_PREFIX}${path}`, headers };
      } else {
        const bases = baseBodies(random);
        const path = pick(random, Object.keys(bases));
        const contentType = pick(random, [
          "application/json",
          "application/json",
          "text/plain",
          "application/json; charset=utf-16",
          undefined,
        ]);
        if (contentType) headers["content-type"] = contentType;
        const payload =
          random() < 0.3
            ? rawPayload(random)
            : JSON.stringify(mutate(random, bases[path] as Record<string, unknown>));
        const url =
          random() < 0.1
            ? `${API_PREFIX}${path.replace("/1/", `/${pick(random, ["0", "-1", "x", "1e3", "%00"])}/`)}`
            : `${API_PREFIX}${path}`;
        request = { method: "POST", url, headers, payload };
      }
      const what = `case ${n} (FUZZ_SEED=${SEED}): ${request.method} ${String(request.url).slice(0, 120)} ${JSON.stringify(headers).slice(0, 200)} ${String(request.payload ?? "").slice(0, 200)}`;
      const response = await fixture.server.app.inject(request);
      expect(response.statusCode, `${what}\n→ ${response.body.slice(0, 300)}`).toBeLessThan(500);
      if (response.statusCode >= 400) {
        const body = response.json() as { error?: unknown };
        expect(typeof body.error, what).toBe("string");
        expect((body.error as string).length, what).toBeGreaterThan(0);
        expect(response.body, what).not.toMatch(/\n\s+at /); // no stack trace
      }
      expect(({} as Record<string, unknown>).polluted, what).toBeUndefined();
      expect(Object.getOwnPropertyNames(Object.prototype).sort(), what).toEqual(prototypeKeys);
    }
    expect(fixture.warnings.filter((line) => /internal error|Error:/.test(line))).toEqual([]);

    // Still serving: a normal read and a normal registration.
    const status = await fixture.server.app.inject({
      method: "GET",
      url: `${API_PREFIX}/status`,
      headers: viewerAuth,
    });
    expect(status.statusCode).toBe(200);
    const register = await fixture.server.app.inject({
      method: "POST",
      url: `${API_PREFIX}/agents`,
      headers: { authorization: `Bearer ${AGENT_TOKEN}` },
      payload: agentInfo("after-fuzz"),
    });
    expect(register.statusCode, register.body).toBe(200);
  }, 120_000);

  it("never lets a hostile Host or token through to a read", async () => {
    const fixture = await startFixture(simpleSweep(1), { trustLoopback: true });
    fixtures.push(fixture);
    const random = mulberry32(SEED + 1);
    for (let n = 0; n < 200; n++) {
      const host = pick(
        random,
        HOSTS.filter((candidate) => !/^(127\.0\.0\.1|localhost:7070|\[::1\]:7070)$/.test(candidate)),
      );
      const token = pick(random, [
        "",
        "nope",
        `${VIEWER_TOKEN}x`,
        VIEWER_TOKEN.slice(1),
        VIEWER_TOKEN.toUpperCase(),
        "null",
      ]);
      const response = await fixture.server.app.inject({
        method: "GET",
        url: `${API_PREFIX}${pick(random, ["/status", "/agents", "/tasks/1", "/tasks/1/log", "/dashboard/overview"])}`,
        headers: { host, authorization: `Bearer ${token}`, cookie: `labsweep_viewer=${token}` },
        remoteAddress: pick(random, ["127.0.0.1", "::1", "10.0.0.7"]),
      } as InjectOptions);
      expect(response.statusCode, `Host ${host.slice(0, 40)} token ${token.slice(0, 40)}`).toBe(401);
    }
  });
});
