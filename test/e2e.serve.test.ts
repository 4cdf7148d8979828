/**
 * End to end: `labsweep serve` as a real process on 127.0.0.1 (port 0; it prints its URL on
 * stdout), its tokens (`labsweep token`, --agent-token, LABSWEEP_AGENT_TOKEN, a 0600 file, never
 * in its output), the remote commands (status, agents, cancel, add, logs) against it, the
 * clear-text warning, and HTTPS with --tls-cert/--tls-key. Agents are played by hand with fetch.
 * Run `npm run build` first: these tests run bin/labsweep.js, which runs dist/.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { startServer } from "../src/app/serve.js";
import { clearTextWarning } from "../src/http/tokens.js";
import { openLedger } from "../src/ledger/openLedger.js";
import { API_PREFIX } from "../src/protocol/http.js";
import { CLEAN_ENV, type CliResult, collect, runCli, startCli, tempDir, writeFile } from "./helpers/cli.js";
import { agentInfo, capacityOf } from "./helpers/coordinatorFixture.js";

const TOKEN = "e2e-agent-token-4f1c9a7d2b";

const SWEEP = `retries: 0
main:
  command: echo main {x}
  output_dir: out
  combinations:
    - x: [1, 2]
side:
  command: echo side {z}
  output_dir: side
  combinations:
    - z: [1, 2, 3]
`;

interface Served {
  url: string;
  stateDir: string;
  exit: Promise<CliResult>;
  child: ReturnType<typeof startCli>;
}

/** Starts `labsweep serve` and waits for the URL it prints on stdout. */
async function serve(dir: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Served> {
  const child = startCli(["serve", join(dir, "sweep.yaml"), "--port", "0", ...args], {
    cwd: dir,
    env: { ...CLEAN_ENV, ...env },
  });
  const exit = collect(child, 90_000);
  const url = await new Promise<string>((resolve, reject) => {
    let text = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      text += chunk.toString();
      const line = text.split("\n")[0] ?? "";
      if (text.includes("\n")) resolve(line.trim());
    });
    void exit.then((result) => reject(new Error(`serve exited ${result.code} first:\n${result.stderr}`)));
  });
  return { url, stateDir: join(dir, ".labsweep"), exit, child };
}

async function api<T>(served: Served, method: "GET" | "POST", path: string, body?: unknown): Promise<T> {
  const response = await fetch(`${served.url}${API_PREFIX}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${TOKEN}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  expect(response.status, `${method} ${path}: ${text}`).toBe(200);
  return JSON.parse(text) as T;
}

interface Leased {
  lease: { attemptId: number; task: { id: number; params: Record<string, unknown> } } | null;
  done: boolean;
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return runCli(args, { env: { ...CLEAN_ENV, ...env }, timeoutMs: 20_000 });
}

function expectOk(result: CliResult): void {
  expect(result.code, `exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`).toBe(0);
}

describe("labsweep serve", () => {
  it("serves a sweep to hand-driven agents; token, status, agents, cancel, add and logs work against it", async () => {
    const dir = tempDir();
    writeFile(dir, "sweep.yaml", SWEEP);
    const served = await serve(dir, ["--exit-when-done", "--agent-token", TOKEN]);
    expect(served.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    // The token: as given, printed by `labsweep token`, stored readable by its owner only.
    // (CLI calls that do not depend on each other run side by side: each costs a Node start.)
    const [token, viewer, admin, tokenless] = await Promise.all([
      cli(["token", "--state", served.stateDir]),
      cli(["token", "--state", served.stateDir, "--viewer"]),
      cli(["token", "--state", served.stateDir, "--admin"]),
      cli(["status", "--server", served.url, "--json"]),
    ]);
    expectOk(token);
    expect(token.stdout).toBe(`${TOKEN}\n`);
    expectOk(viewer);
    expectOk(admin);
    const viewerToken = viewer.stdout.trim();
    const adminToken = admin.stdout.trim();
    expect(viewerToken).toMatch(/^\S{20,}$/);
    expect(adminToken).toMatch(/^\S{20,}$/);
    expect(new Set([TOKEN, viewerToken, adminToken]).size).toBe(3);
    expect(statSync(join(served.stateDir, "tokens.json")).mode & 0o777).toBe(0o600);
    // `serve` trusts no one for being on this machine unless --trust-loopback says so.
    expect(tokenless.code).toBe(2);
    expect(tokenless.stderr).toContain("rejected the token");
    const reader = { LABSWEEP_VIEWER_TOKEN: viewerToken };
    const status = await cli(["status", "--server", served.url, "--json"], reader);

    expectOk(status);
    expect(JSON.parse(status.stdout)).toMatchObject({ unique: 5, pending: 5, running: 0 });

    // An agent, by hand: register, lease, start, stream a log.
    await api(served, "POST", "/agents", agentInfo("hand-1", { slots: 4 }));
    const first = await api<Leased>(served, "POST", "/lease", {
      agentId: "hand-1",
      capacity: capacityOf({ slots: 4 }),
      waitMs: 0,
    });
    const attemptId = first.lease?.attemptId as number;
    expect(first.lease?.task.params).toEqual({ x: 1 });
    await api(served, "POST", `/attempts/${attemptId}/started`, { agentId: "hand-1", pid: process.pid });
    await api(served, "POST", `/attempts/${attemptId}/log`, {
      agentId: "hand-1",
      offset: 0,
      text: "epoch 1\n",
    });
    await api(served, "POST", `/attempts/${attemptId}/log`, {
      agentId: "hand-1",
      offset: 8,
      text: "epoch 2\n",
    });

    const [agents, agentsText, logs] = await Promise.all([
      cli(["agents", "--server", served.url, "--json"], reader),
      cli(["agents", "--server", served.url], reader),
      cli(["logs", "1", "--server", served.url], reader),
    ]);
    expectOk(agents);
    const listed = JSON.parse(agents.stdout) as {
      agents: Array<{ id: string; state: string; running: number }>;
    };
    expect(listed.agents).toEqual([
      expect.objectContaining({ id: "hand-1", state: "connected", running: 1 }),
    ]);
    expect(agentsText.stdout).toContain("hand-1 on test-host: connected, 1 running, 4 slots");

    expectOk(logs);
    expect(logs.stdout).toBe("epoch 1\nepoch 2\n");

    // Changes need the admin token: not the viewer's, and not the agent's (a compute node's).
    const adminFile = join(dir, "admin.token");
    writeFileSync(adminFile, `${adminToken}\n`, { mode: 0o600 });
    const [anonymous, asViewer, asAgent] = await Promise.all([
      cli(["cancel", "--phase", "side", "--server", served.url]),
      cli(["cancel", "--phase", "side", "--server", served.url], reader),
      cli(["cancel", "--phase", "side", "--server", served.url], { LABSWEEP_TOKEN: TOKEN }),
    ]);
    for (const refused of [anonymous, asViewer, asAgent]) {
      expect(refused.code, refused.stderr).toBe(2);
      expect(refused.stderr).toContain("needs the admin token");
    }
    const cancel = await cli([
      "cancel",
      "--phase",
      "side",
      "--server",
      served.url,
      "--token-file",
      adminFile,
    ]);
    expectOk(cancel);
    expect(cancel.stdout).toBe("3 task(s) cancelled\n");

    writeFile(
      dir,
      "extra.yaml",
      "extra:\n  command: echo extra {y}\n  output_dir: extra\n  combinations:\n    - y: [9]\n",
    );
    writeFile(dir, "bad.yaml", "broken:\n  combinations:\n    - y: []\n");
    const [add, bad] = await Promise.all([
      cli(["add", join(dir, "extra.yaml"), "--server", served.url], { LABSWEEP_ADMIN_TOKEN: adminToken }),
      cli(["add", join(dir, "bad.yaml"), "--server", served.url], { LABSWEEP_ADMIN_TOKEN: adminToken }),
    ]);
    expectOk(add);
    expect(add.stdout).toContain("added: 1 new tasks");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(new RegExp(`${join(dir, "bad.yaml")}:\\d+:\\d+`));

    // Finish everything that is left; the coordinator then exits on its own.
    const done = { kind: "succeeded", metrics: { acc: 1 }, wallSeconds: 0.5 };
    await api(served, "POST", `/attempts/${attemptId}/finish`, { agentId: "hand-1", outcome: done });
    const ran: unknown[] = [first.lease?.task.params];
    for (;;) {
      const next = await api<Leased>(served, "POST", "/lease", {
        agentId: "hand-1",
        capacity: capacityOf({ slots: 4 }),
        waitMs: 5000,
      });
      if (next.done) break;
      if (!next.lease) continue;
      ran.push(next.lease.task.params);
      await api(served, "POST", `/attempts/${next.lease.attemptId}/finish`, {
        agentId: "hand-1",
        outcome: done,
      });
    }
    expect(ran).toEqual([{ x: 1 }, { x: 2 }, { y: 9 }]);

    const result = await served.exit;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain("every task has finished");
    expect(result.stderr).toContain(`serving ${served.url}`);
    // Agents are told to take the token from the environment, never from their arguments.
    expect(result.stderr).toContain('LABSWEEP_TOKEN="$(labsweep token --state');
    expect(result.stderr).not.toContain("--token");
    for (const secret of [TOKEN, viewerToken, adminToken]) {
      expect(result.stderr).not.toContain(secret);
      expect(result.stdout).not.toContain(secret);
    }
    expect(result.stderr).not.toContain("without TLS");
    expect(
      readFileSync(join(dir, "out", "final_results.csv"), "utf8")
        .trim()
        .split("\n"),
    ).toHaveLength(3);
    expect(
      readFileSync(join(dir, "extra", "final_results.csv"), "utf8")
        .trim()
        .split("\n"),
    ).toHaveLength(2);
  }, 120_000); // many CLI starts, each a Node start on a shared machine

  it("runs a sweep with the real `labsweep agent`; the streamed logs are served afterwards", async () => {
    const dir = tempDir();
    writeFile(dir, "sweep.yaml", SWEEP.replace("z: [1, 2, 3]", "z: [4]"));
    const served = await serve(dir, ["--agent-token", TOKEN]);
    const agent = await cli(
      ["agent", "--server", served.url, "--slots", "2", "--state", join(dir, "agent-state")],
      { LABSWEEP_TOKEN: TOKEN },
    );
    expectOk(agent);
    const [status, logs] = await Promise.all([
      cli(["status", "--server", served.url, "--json"], { LABSWEEP_TOKEN: TOKEN }),
      cli(["logs", "3", "--server", served.url], { LABSWEEP_TOKEN: TOKEN }),
    ]);
    expect(JSON.parse(status.stdout)).toMatchObject({ unique: 3, succeeded: 3 });
    expectOk(logs);
    expect(logs.stdout).toContain("side 4\n");
    served.child.kill("SIGINT");
    const result = await served.exit;
    expect(result.code).toBe(130);
    expect(result.stderr).not.toContain(TOKEN);
    expect(agent.stderr).not.toContain(TOKEN);
    expect(
      readFileSync(join(dir, "out", "final_results.csv"), "utf8")
        .trim()
        .split("\n"),
    ).toHaveLength(3);
    expect(
      readFileSync(join(dir, "side", "final_results.csv"), "utf8")
        .trim()
        .split("\n"),
    ).toHaveLength(2);
  });

  it("takes its agent token from LABSWEEP_AGENT_TOKEN, keeps it, and stops on SIGINT", async () => {
    const dir = tempDir();
    writeFile(dir, "sweep.yaml", SWEEP);
    const served = await serve(dir, [], { LABSWEEP_AGENT_TOKEN: TOKEN });
    const token = await cli(["token", "--state", served.stateDir]);
    expect(token.stdout).toBe(`${TOKEN}\n`);
    const register = await fetch(`${served.url}${API_PREFIX}/agents`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify(agentInfo("env-agent")),
    });
    expect(register.status).toBe(200);
    const wrong = await fetch(`${served.url}${API_PREFIX}/agents`, {
      method: "POST",
      headers: { authorization: "Bearer something-else", "content-type": "application/json" },
      body: JSON.stringify(agentInfo("intruder")),
    });
    expect(wrong.status).toBe(401);
    served.child.kill("SIGINT");
    const result = await served.exit;
    expect(result.code).toBe(130);
    expect(result.stderr).not.toContain(TOKEN);

    // The stored token survives a restart without the variable.
    const again = await serve(dir, []);
    expect((await cli(["token", "--state", again.stateDir])).stdout).toBe(`${TOKEN}\n`);
    again.child.kill("SIGINT");
    expect((await again.exit).code).toBe(130);
  });

  it("rejects unusable token and TLS flags before touching the ledger", async () => {
    const dir = tempDir();
    writeFile(dir, "sweep.yaml", SWEEP);
    const spaced = await cli(["serve", join(dir, "sweep.yaml"), "--port", "0", "--agent-token", "a b"]);
    expect(spaced.code).toBe(2);
    expect(spaced.stderr).toContain("agent token");
    const same = await cli([
      "serve",
      join(dir, "sweep.yaml"),
      "--port",
      "0",
      "--agent-token",
      "same-token",
      "--viewer-token",
      "same-token",
    ]);
    expect(same.code).toBe(2);
    const half = await cli(["serve", join(dir, "sweep.yaml"), "--port", "0", "--tls-cert", "x.pem"]);
    expect(half.code).toBe(2);
    expect(half.stderr).toContain("--tls-cert and --tls-key go together");
    for (const result of [spaced, same, half]) expect(result.stderr).not.toContain("serving");
    expect(existsSync(join(dir, ".labsweep"))).toBe(false);
  });
});

describe("clear-text warning", () => {
  it("warns when serving beyond loopback without TLS", () => {
    for (const host of ["0.0.0.0", "::", "10.0.0.5", "192.168.1.20", "my-host.example"]) {
      expect(clearTextWarning(host, false), host).toMatch(/without TLS — tokens travel in clear text/);
      expect(clearTextWarning(host, true), host).toBeNull();
    }
    for (const host of ["127.0.0.1", "127.0.1.1", "::1", "localhost", "LOCALHOST"])
      expect(clearTextWarning(host, false), host).toBeNull();
  });

  it("is not printed by a server on 127.0.0.1", async () => {
    const dir = tempDir();
    const db = await openLedger(join(dir, "state"));
    const warnings: string[] = [];
    try {
      const server = await startServer(db, {
        stateDir: join(dir, "state"),
        host: "127.0.0.1",
        port: 0,
        warn: (line) => warnings.push(line),
      });
      await server.close();
    } finally {
      await db.close();
    }
    expect(warnings).toEqual([]);
  });
});

const hasOpenssl = spawnSync("openssl", ["version"]).status === 0;

describe("HTTPS", () => {
  it.skipIf(!hasOpenssl)("serves HTTPS with --tls-cert and --tls-key", async () => {
    const dir = tempDir();
    writeFile(dir, "sweep.yaml", SWEEP);
    const cert = join(dir, "cert.pem");
    const key = join(dir, "key.pem");
    const made = spawnSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-days",
        "1",
        "-keyout",
        key,
        "-out",
        cert,
      ],
      { encoding: "utf8" },
    );
    expect(made.status, made.stderr).toBe(0);
    const served = await serve(dir, ["--tls-cert", cert, "--tls-key", key, "--agent-token", TOKEN]);
    expect(served.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);

    const health = await httpsGet(`${served.url}${API_PREFIX}/health`);
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body)).toMatchObject({ ok: true });
    const status = await httpsGet(`${served.url}${API_PREFIX}/status`, { authorization: `Bearer ${TOKEN}` });
    expect(JSON.parse(status.body)).toMatchObject({ unique: 5 });

    // The CLI's fetch over TLS, trusting the self-signed certificate for this test only.
    const remote = await cli(["status", "--server", served.url, "--json"], {
      NODE_TLS_REJECT_UNAUTHORIZED: "0",
      LABSWEEP_TOKEN: TOKEN,
    });
    expectOk(remote);
    expect(JSON.parse(remote.stdout)).toMatchObject({ unique: 5 });

    // Plain HTTP to the TLS port gets no API answer.
    const plain = await fetch(`${served.url.replace("https:", "http:")}${API_PREFIX}/health`).then(
      (response) => response.status,
      () => "refused",
    );
    expect(plain).not.toBe(200);

    served.child.kill("SIGINT");
    const result = await served.exit;
    expect(result.code).toBe(130);
    expect(result.stderr).not.toContain("without TLS");
  });
});

/** GET over HTTPS accepting a self-signed certificate. */
function httpsGet(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: "GET", headers, rejectUnauthorized: false }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => {
        body += chunk;
      });
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}
