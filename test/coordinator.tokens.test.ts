/**
 * Token hygiene on the coordinator's side: three powers (agent, viewer, admin), tokens.json
 * written without following a planted symlink, `serve --tokens-file` refusing a file others can
 * read, and a dashboard cookie that is not the viewer token but opens the log pane.
 */
import { chmodSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { InjectOptions } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import {
  loadOrCreateTokens,
  readStoredTokens,
  readTokenFile,
  readTokensFile,
  TokenError,
} from "../src/http/tokens.js";
import { API_PREFIX } from "../src/protocol/http.js";
import { runCli, tempDir } from "./helpers/cli.js";
import {
  ADMIN_TOKEN,
  AGENT_TOKEN,
  adminAuth,
  agentAuth,
  agentInfo,
  capacityOf,
  type Fixture,
  simpleSweep,
  startFixture,
  VIEWER_TOKEN,
  viewerAuth,
} from "./helpers/coordinatorFixture.js";

const fixtures: Fixture[] = [];
afterEach(async () => {
  await Promise.all(fixtures.splice(0).map((fixture) => fixture.close()));
});

async function serve(): Promise<Fixture> {
  const fixture = await startFixture(simpleSweep(3));
  fixtures.push(fixture);
  return fixture;
}

const REMOTE = { remoteAddress: "10.2.3.4" };

function call(fixture: Fixture, method: "GET" | "POST", path: string, headers: object, payload?: unknown) {
  return fixture.server.app.inject({
    method,
    url: `${API_PREFIX}${path}`,
    headers,
    ...(payload === undefined ? {} : { payload }),
    ...REMOTE,
  } as InjectOptions);
}

describe("three tokens, three powers", () => {
  it("lets only the admin token add, cancel and retry; not the agent token of a compute node", async () => {
    const fixture = await serve();
    const changes: Array<[string, unknown]> = [
      ["/cancel", { taskIds: [3] }],
      ["/retry", {}],
      [
        "/configs",
        { files: [{ path: join(fixture.dir, "more.yaml"), text: simpleSweep(4).replace("main:", "more:") }] },
      ],
    ];
    for (const [path, body] of changes)
      for (const headers of [agentAuth, viewerAuth, {}]) {
        const response = await call(fixture, "POST", path, headers, body);
        expect(response.statusCode, `${path} ${JSON.stringify(headers)}`).toBe(401);
        expect(response.json().error).toContain("admin token");
      }
    for (const [path, body] of changes) {
      const response = await call(fixture, "POST", path, adminAuth, body);
      expect(response.statusCode, `${path}: ${response.body}`).toBe(200);
    }
    // The admin token reads like the viewer's, but is no agent.
    expect((await call(fixture, "GET", "/status", adminAuth)).statusCode).toBe(200);
    expect((await call(fixture, "POST", "/agents", adminAuth, agentInfo("a1"))).statusCode).toBe(401);
    const lease = { agentId: "a1", capacity: capacityOf(), waitMs: 0 };
    expect((await call(fixture, "POST", "/lease", adminAuth, lease)).statusCode).toBe(401);
  });

  it("keeps three distinct tokens in tokens.json, adding the admin token to an older file", () => {
    const stateDir = tempDir();
    writeFileSync(
      join(stateDir, "tokens.json"),
      JSON.stringify({ agent: "old-agent-1", viewer: "old-viewer-1" }),
      {
        mode: 0o600,
      },
    );
    const tokens = loadOrCreateTokens(stateDir);
    expect(tokens.agent).toBe("old-agent-1");
    expect(tokens.viewer).toBe("old-viewer-1");
    expect(tokens.admin).toMatch(/^[\w-]{20,}$/);
    expect(readStoredTokens(stateDir)).toEqual(tokens);
    expect(() => loadOrCreateTokens(stateDir, { admin: "old-agent-1" })).toThrow(/must all differ/);
  });
});

describe("tokens.json is never followed through a symlink", () => {
  it("refuses a symlink planted at tokens.json, leaving its target alone", async () => {
    const stateDir = tempDir();
    const elsewhere = join(tempDir(), "victim.json");
    writeFileSync(elsewhere, '{"agent":"a-planted-1","viewer":"v-planted-1","admin":"x-planted-1"}');
    symlinkSync(elsewhere, join(stateDir, "tokens.json"));
    expect(() => loadOrCreateTokens(stateDir)).toThrow(TokenError);
    expect(() => loadOrCreateTokens(stateDir)).toThrow(/symbolic link: refusing to follow it/);
    expect(() => readStoredTokens(stateDir)).toThrow(/symbolic link/);
    expect(readFileSync(elsewhere, "utf8")).toContain("a-planted-1");
    // Also for `labsweep token`: one clear line, exit 2, and the planted file's token not printed.
    const printed = await runCli(["token", "--state", stateDir]);
    expect(printed.code).toBe(2);
    expect(printed.stderr).toMatch(/^labsweep: .*tokens\.json is a symbolic link/);
    expect(printed.stdout).toBe("");
  });

  it("refuses a dangling symlink too (it would create the file wherever it points)", () => {
    const stateDir = tempDir();
    const target = join(tempDir(), "created-by-labsweep.json");
    symlinkSync(target, join(stateDir, "tokens.json"));
    expect(() => loadOrCreateTokens(stateDir)).toThrow(/symbolic link/);
    expect(() => readFileSync(target)).toThrow();
  });
});

describe("token files", () => {
  it("reads serve's --tokens-file only when no other user may read it, and names bad keys", () => {
    const dir = tempDir();
    const path = join(dir, "tokens.json");
    writeFileSync(path, JSON.stringify({ agent: "file-agent-1", admin: "file-admin-1" }), { mode: 0o644 });
    chmodSync(path, 0o644);
    expect(() => readTokensFile(path)).toThrow(/other users.*chmod 600/);
    chmodSync(path, 0o600);
    expect(readTokensFile(path)).toEqual({ agent: "file-agent-1", admin: "file-admin-1" });
    writeFileSync(path, JSON.stringify({ agnet: "x" }));
    expect(() => readTokensFile(path)).toThrow(/unknown key "agnet"/);
    writeFileSync(path, "{not json");
    expect(() => readTokensFile(path)).toThrow(/not valid JSON/);
    expect(() => readTokensFile(join(dir, "missing.json"))).toThrow(/ENOENT/);
  });

  it("reads --token-file's first line as the token", () => {
    const dir = tempDir();
    mkdirSync(join(dir, "sub"));
    const path = join(dir, "sub", "agent.token");
    writeFileSync(path, "tok-123_abc\n");
    expect(readTokenFile(path)).toBe("tok-123_abc");
    writeFileSync(path, "two words\n");
    expect(() => readTokenFile(path)).toThrow(/one token/);
  });
});

describe("the dashboard cookie", () => {
  it("holds a digest of the viewer token, opens the task log pane, and nothing more", async () => {
    const fixture = await serve();
    const link = await fixture.server.app.inject({
      method: "GET",
      url: `/?token=${encodeURIComponent(VIEWER_TOKEN)}`,
      ...REMOTE,
    } as InjectOptions);
    expect(link.statusCode).toBe(303);
    const setCookie = String(link.headers["set-cookie"]);
    const jar = { cookie: setCookie.split(";")[0] as string };
    for (const token of [VIEWER_TOKEN, AGENT_TOKEN, ADMIN_TOKEN]) expect(setCookie).not.toContain(token);

    // The log pane fetches api/v1/tasks/:id/log with the cookie: it must not be 401.
    await call(fixture, "POST", "/agents", agentAuth, agentInfo("a1"));
    const leased = await call(fixture, "POST", "/lease", agentAuth, {
      agentId: "a1",
      capacity: capacityOf(),
      waitMs: 0,
    });
    const attemptId = leased.json().lease.attemptId as number;
    await call(fixture, "POST", `/attempts/${attemptId}/log`, agentAuth, {
      agentId: "a1",
      offset: 0,
      text: "hi\n",
    });
    const log = await call(fixture, "GET", "/tasks/1/log", jar);
    expect(log.statusCode, log.body).toBe(200);
    expect(log.body).toBe("hi\n");

    // A cookie is not a bearer token, nor are changes or agent routes open to it.
    expect(
      (await call(fixture, "GET", "/status", { authorization: `Bearer ${jar.cookie.split("=")[1]}` }))
        .statusCode,
    ).toBe(401);
    expect((await call(fixture, "POST", "/cancel", jar, { taskIds: [1] })).statusCode).toBe(401);
    expect(
      (await call(fixture, "POST", "/heartbeat", jar, { agentId: "a1", attemptIds: [] })).statusCode,
    ).toBe(401);
  });
});
