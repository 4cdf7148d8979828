/**
 * Over real HTTP on 127.0.0.1 against `startServer`: a success's finish report declares its
 * artifacts, and the coordinator records it only if they are all stored as that attempt's own —
 * race (a), a late success after a retry's upload, and race (b), a stale attempt's upload just
 * before the current one's finish, played in a fixed order by hand (no sleeps). Also: a recorded
 * success deletes other attempts' files; hostile `artifacts` lists are a 400 that changes nothing;
 * `labsweep run`'s in-process path and a remote agent's delivery both send the list.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Contact } from "../src/agent/contact.js";
import { CoordinatorClient } from "../src/agent/httpClient.js";
import { deliverReport } from "../src/agent/reportDelivery.js";
import { ArtifactStore, storeBeforeReport } from "../src/coordinator/artifactStore.js";
import { artifactDir } from "../src/protocol/artifacts.js";
import { API_PREFIX } from "../src/protocol/http.js";
import type { AttemptOutcome } from "../src/protocol/interfaces.js";
import { tempDir } from "./helpers/cli.js";
import {
  AGENT_TOKEN,
  agentAuth,
  agentInfo,
  capacityOf,
  type Fixture,
  simpleSweep,
  startFixture,
} from "./helpers/coordinatorFixture.js";

const fixtures: Fixture[] = [];
afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.close();
});

const SUCCESS: AttemptOutcome = { kind: "succeeded", metrics: { loss: 1 }, wallSeconds: 1 };
const sha = (text: string) => createHash("sha256").update(text).digest("hex");

async function serve(): Promise<Fixture> {
  // retries: 0 — a report that spent a retry would fail the task.
  const fixture = await startFixture(simpleSweep(1));
  fixtures.push(fixture);
  return fixture;
}

async function call(
  fixture: Fixture,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const raw = typeof body === "string" ? body : JSON.stringify(body);
  const response = await fetch(`${fixture.server.url}${API_PREFIX}${path}`, {
    method,
    headers: { ...agentAuth, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : raw,
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

/** Registers `agentId` and leases the sweep's one task: a new attempt. */
async function lease(fixture: Fixture, agentId: string): Promise<{ attemptId: number; taskId: number }> {
  expect((await call(fixture, "POST", "/agents", agentInfo(agentId))).status).toBe(200);
  const leased = await call(fixture, "POST", "/lease", { agentId, capacity: capacityOf(), waitMs: 0 });
  const got = leased.json.lease as { attemptId: number; task: { id: number } } | null;
  if (!got) throw new Error(`nothing leased: ${JSON.stringify(leased.json)}`);
  return { attemptId: got.attemptId, taskId: got.task.id };
}

async function upload(fixture: Fixture, agentId: string, attemptId: number, path: string, text: string) {
  const query = `?offset=0&size=${Buffer.byteLength(text)}&sha256=${sha(text)}`;
  const response = await fetch(
    `${fixture.server.url}${API_PREFIX}/agents/${agentId}/attempts/${attemptId}/artifacts/${path}${query}`,
    { method: "PUT", headers: { ...agentAuth, "content-type": "application/octet-stream" }, body: text },
  );
  expect(response.status, await response.text()).toBe(200);
}

function finish(fixture: Fixture, agentId: string, attemptId: number, files?: Record<string, string>) {
  const artifacts = files && Object.entries(files).map(([path, text]) => ({ path, sha256: sha(text) }));
  return call(fixture, "POST", `/attempts/${attemptId}/finish`, {
    agentId,
    outcome: SUCCESS,
    ...(artifacts ? { artifacts } : {}),
  });
}

async function filesOnDisk(fixture: Fixture, taskId: number): Promise<Record<string, string>> {
  const signature = (
    await fixture.db.one<{ signature: string }>("SELECT signature FROM tasks WHERE id = $1", [taskId])
  )?.signature as string;
  const dir = artifactDir(join(fixture.dir, "out"), signature);
  const files: Record<string, string> = {};
  for (const name of ["f1", "f2", "z.txt"])
    if (existsSync(join(dir, name))) files[name] = readFileSync(join(dir, name), "utf8");
  return files;
}

async function taskState(fixture: Fixture, taskId: number) {
  return fixture.db.one<{ state: string; attempts: number }>(
    "SELECT state, attempts FROM tasks WHERE id = $1",
    [taskId],
  );
}

describe("a success's artifacts at its finish", () => {
  it("(a) a late success whose files a retry's upload superseded is ignored; the retry's is recorded with its own files", async () => {
    const fixture = await serve();
    const a = await lease(fixture, "agent-a");
    await upload(fixture, "agent-a", a.attemptId, "f1", "a1");
    await upload(fixture, "agent-a", a.attemptId, "f2", "a2");
    await fixture.server.coordinator.requeueLost([a.attemptId], "its lease ran out");
    const b = await lease(fixture, "agent-b");
    await upload(fixture, "agent-b", b.attemptId, "f1", "b1");
    expect(await finish(fixture, "agent-a", a.attemptId, { f1: "a1", f2: "a2" })).toEqual({
      status: 200,
      json: { accepted: false, taskState: "ignored" },
    });
    expect(await taskState(fixture, a.taskId)).toMatchObject({ state: "running" });
    expect(await filesOnDisk(fixture, a.taskId)).toEqual({ f1: "b1" });
    await upload(fixture, "agent-b", b.attemptId, "f2", "b2");
    expect((await finish(fixture, "agent-b", b.attemptId, { f1: "b1", f2: "b2" })).json.taskState).toBe(
      "succeeded",
    );
    expect(await filesOnDisk(fixture, a.taskId)).toEqual({ f1: "b1", f2: "b2" });
  });

  it("(b) a stale attempt's upload just before the current one's finish requeues the task; the stale success holding its files is recorded", async () => {
    const fixture = await serve();
    const z = await lease(fixture, "agent-z");
    await fixture.server.coordinator.requeueLost([z.attemptId], "its lease ran out");
    const a = await lease(fixture, "agent-a");
    await upload(fixture, "agent-a", a.attemptId, "f1", "a1");
    await upload(fixture, "agent-a", a.attemptId, "f2", "a2");
    await upload(fixture, "agent-z", z.attemptId, "f1", "z1");
    expect(await finish(fixture, "agent-a", a.attemptId, { f1: "a1", f2: "a2" })).toEqual({
      status: 200,
      json: { accepted: true, taskState: "pending" },
    });
    expect(await taskState(fixture, a.taskId)).toEqual({ state: "pending", attempts: 0 });
    // Z's late success names only the file it stored: its result and its files go together.
    expect((await finish(fixture, "agent-z", z.attemptId, { f1: "z1" })).json.taskState).toBe("succeeded");
    expect(await filesOnDisk(fixture, a.taskId)).toEqual({ f1: "z1" });
  });

  it("a recorded success deletes the files other attempts left, before it answers", async () => {
    const fixture = await serve();
    const z = await lease(fixture, "agent-z");
    await upload(fixture, "agent-z", z.attemptId, "z.txt", "z");
    await fixture.server.coordinator.requeueLost([z.attemptId], "its lease ran out");
    const a = await lease(fixture, "agent-a");
    expect(await filesOnDisk(fixture, a.taskId)).toEqual({ "z.txt": "z" });
    // No list: an agent from before it, or a success with no files, declares nothing.
    expect((await finish(fixture, "agent-a", a.attemptId)).json.taskState).toBe("succeeded");
    expect(await filesOnDisk(fixture, a.taskId)).toEqual({});
    expect((await call(fixture, "GET", `/tasks/${a.taskId}/artifacts`)).json).toMatchObject({
      artifacts: [],
    });
  });

  // A list that is not what an agent sends: refused before the ledger is touched. (An unknown
  // key in an entry is dropped by the schema, like any other.)
  const hostile: Array<{ name: string; status: number; why: RegExp; artifacts: unknown }> = [
    { name: "not a list", status: 400, why: /artifacts/, artifacts: { path: "f1", sha256: sha("x") } },
    { name: "an entry without its sha256", status: 400, why: /sha256/, artifacts: [{ path: "f1" }] },
    {
      name: "an uppercase sha256",
      status: 400,
      why: /sha256/,
      artifacts: [{ path: "f1", sha256: sha("x").toUpperCase() }],
    },
    { name: "a short sha256", status: 400, why: /sha256/, artifacts: [{ path: "f1", sha256: "ab" }] },
    {
      name: "a path that climbs out",
      status: 400,
      why: /artifacts\[0\]\.path "\.\.\/\.\.\/etc\/passwd" has an empty, `\.` or `\.\.` segment/,
      artifacts: [{ path: "../../etc/passwd", sha256: sha("x") }],
    },
    {
      name: "an absolute path",
      status: 400,
      why: /artifacts\[1\]\.path .* is absolute/,
      artifacts: [
        { path: "ok", sha256: sha("x") },
        { path: "/etc/passwd", sha256: sha("x") },
      ],
    },
    {
      name: "a NUL in a path",
      status: 400,
      why: /control character/,
      artifacts: [{ path: "a\u0000b", sha256: sha("x") }],
    },
    { name: "an object for a path", status: 400, why: /path/, artifacts: [{ path: {}, sha256: sha("x") }] },
    {
      name: "an over-long path",
      status: 400,
      why: /path/,
      artifacts: [{ path: "a".repeat(5000), sha256: sha("x") }],
    },
    {
      name: "1,001 entries",
      status: 400,
      why: /1000/,
      artifacts: Array.from({ length: 1001 }, (_, i) => ({ path: `f${i}`, sha256: sha("x") })),
    },
    {
      name: "a body over the limit",
      status: 413,
      why: /too large/,
      artifacts: Array.from({ length: 1000 }, (_, i) => ({
        path: `${"d/".repeat(500)}${i}`,
        sha256: sha("x"),
      })),
    },
  ];
  it.each(hostile)(
    "$name is refused ($status), records nothing, and the server goes on",
    async ({ status, why, artifacts }) => {
      const fixture = await serve();
      const a = await lease(fixture, "agent-a");
      const answer = await call(fixture, "POST", `/attempts/${a.attemptId}/finish`, {
        agentId: "agent-a",
        outcome: SUCCESS,
        artifacts,
      });
      expect(answer.status).toBe(status);
      expect(String(answer.json.error)).toMatch(why);
      expect(await taskState(fixture, a.taskId)).toMatchObject({ state: "running" });
      // The attempt is still open: its real report is recorded.
      expect((await finish(fixture, "agent-a", a.attemptId)).json.taskState).toBe("succeeded");
    },
  );
});

describe("the reports that carry the list", () => {
  it("`labsweep run`'s in-process path: storeBeforeReport declares what it stored", async () => {
    const fixture = await serve();
    const z = await lease(fixture, "agent-z");
    await fixture.server.coordinator.requeueLost([z.attemptId], "its lease ran out");
    const a = await lease(fixture, "agent-a");
    const dir = tempDir();
    writeFileSync(join(dir, "f1"), "a1");
    const collected = { dir, files: [{ path: "f1", size: 2, sha256: sha("a1") }] };
    const report = await storeBeforeReport(
      new ArtifactStore(fixture.db),
      a.attemptId,
      { outcome: SUCCESS },
      collected,
    );
    expect(report.artifacts).toEqual([{ path: "f1", sha256: sha("a1") }]);
    await upload(fixture, "agent-z", z.attemptId, "f1", "z1");
    expect((await fixture.server.coordinator.finish(a.attemptId, report)).taskState).toBe("pending");
  });

  it("a remote agent's delivery declares the outbox record's files", async () => {
    const fixture = await serve();
    const a = await lease(fixture, "agent-a");
    const client = new CoordinatorClient({
      servers: [fixture.server.url],
      token: AGENT_TOKEN,
      warn: () => undefined,
    });
    const record = {
      attemptId: a.attemptId,
      request: { agentId: "agent-a", outcome: SUCCESS },
      artifacts: [{ path: "f1", size: 2, sha256: sha("a1") }],
    };
    // Delivered with no dir to upload from: the report still names f1, which the coordinator
    // does not hold, so the success is not recorded.
    const contact = new Contact(() => undefined);
    expect(await deliverReport(client, contact, record, AbortSignal.timeout(30_000))).toBe("sent");
    expect(await taskState(fixture, a.taskId)).toEqual({ state: "pending", attempts: 0 });
    // And with its dir, it uploads f1 first: the next attempt's success is recorded with it.
    const b = await lease(fixture, "agent-a");
    const outbox = tempDir();
    mkdirSync(outbox, { recursive: true });
    writeFileSync(join(outbox, "f1"), "a1");
    const next = { ...record, attemptId: b.attemptId };
    expect(
      await deliverReport(client, contact, next, AbortSignal.timeout(30_000), {
        dir: outbox,
        warn: () => undefined,
      }),
    ).toBe("sent");
    expect(await taskState(fixture, a.taskId)).toMatchObject({ state: "succeeded" });
    expect(await filesOnDisk(fixture, a.taskId)).toEqual({ f1: "a1" });
  });
});
