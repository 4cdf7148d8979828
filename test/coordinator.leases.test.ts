/**
 * Leases over real HTTP on 127.0.0.1: an agent whose channel (`GET /channel`, server-sent events)
 * drops is lost after a grace period and its tasks run elsewhere; a quick reconnect loses nothing;
 * a silent agent loses its leases when they expire; late successes never make a second CSV row;
 * and a healthy agent is not declared lost for a lease it was not expected to renew.
 */
import { afterEach, describe, expect, it } from "vitest";
import { startServer } from "../src/app/serve.js";
import { API_PREFIX } from "../src/protocol/http.js";
import {
  ADMIN_TOKEN,
  AGENT_TOKEN,
  agentInfo,
  authFor,
  capacityOf,
  csvRows,
  type Fixture,
  simpleSweep,
  sleep,
  startFixture,
  VIEWER_TOKEN,
  viewerAuth,
  waitFor,
} from "./helpers/coordinatorFixture.js";

const fixtures: Fixture[] = [];
const channels: Channel[] = [];
afterEach(async () => {
  for (const channel of channels.splice(0)) channel.close();
  for (const fixture of fixtures.splice(0)) await fixture.close();
});

async function serve(yaml: string, options: Parameters<typeof startFixture>[1]): Promise<Fixture> {
  const fixture = await startFixture(yaml, options);
  fixtures.push(fixture);
  expect(fixture.server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  return fixture;
}

async function post<T>(fixture: Fixture, path: string, body: unknown): Promise<T> {
  const response = await fetch(`${fixture.server.url}${API_PREFIX}${path}`, {
    method: "POST",
    headers: { ...authFor(path), "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  expect(response.status, `${path}: ${text}`).toBe(200);
  return JSON.parse(text) as T;
}

async function get<T>(fixture: Fixture, path: string): Promise<T> {
  const response = await fetch(`${fixture.server.url}${API_PREFIX}${path}`, { headers: viewerAuth });
  expect(response.status).toBe(200);
  return (await response.json()) as T;
}

interface LeaseBody {
  lease: { attemptId: number; task: { id: number } } | null;
  done: boolean;
}

function register(fixture: Fixture, agentId: string, slots = 2) {
  return post<{ leaseMs: number; heartbeatMs: number; openAttempts: number[] }>(
    fixture,
    "/agents",
    agentInfo(agentId, { slots }),
  );
}

function lease(fixture: Fixture, agentId: string, waitMs = 0): Promise<LeaseBody> {
  return post<LeaseBody>(fixture, "/lease", { agentId, capacity: capacityOf(), waitMs });
}

async function leaseTask(fixture: Fixture, agentId: string): Promise<{ attemptId: number; taskId: number }> {
  const answer = await lease(fixture, agentId);
  expect(answer.lease).not.toBeNull();
  return { attemptId: answer.lease?.attemptId as number, taskId: answer.lease?.task.id as number };
}

function heartbeat(fixture: Fixture, agentId: string, attemptIds: number[]) {
  return post<{ stale: number[] }>(fixture, "/heartbeat", { agentId, attemptIds });
}

function finish(fixture: Fixture, agentId: string, attemptId: number, acc: number) {
  return post<{ accepted: boolean; taskState: string }>(fixture, `/attempts/${attemptId}/finish`, {
    agentId,
    outcome: { kind: "succeeded", metrics: { acc }, wallSeconds: 1 },
  });
}

async function taskState(fixture: Fixture, taskId: number): Promise<string> {
  const row = await fixture.db.one<{ state: string }>("SELECT state FROM tasks WHERE id = $1", [taskId]);
  return row?.state as string;
}

interface AgentView {
  id: string;
  state: string;
  lost_reason: string | null;
  running: number;
}

async function agentView(fixture: Fixture, agentId: string): Promise<AgentView | undefined> {
  const { agents } = await get<{ agents: AgentView[] }>(fixture, "/agents");
  return agents.find((agent) => agent.id === agentId);
}

interface Channel {
  events: Array<{ type: string; attemptIds?: number[] }>;
  close(): void;
}

/** Opens an agent's event channel and collects its events until closed. */
async function openChannel(fixture: Fixture, agentId: string): Promise<Channel> {
  const controller = new AbortController();
  const response = await fetch(`${fixture.server.url}${API_PREFIX}/channel?agentId=${agentId}`, {
    headers: { authorization: `Bearer ${AGENT_TOKEN}` },
    signal: controller.signal,
  });
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toBe("text/event-stream");
  const events: Channel["events"] = [];
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const pump = async (): Promise<void> => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end = buffer.indexOf("\n\n");
      while (end >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (frame.startsWith("data: ")) events.push(JSON.parse(frame.slice(6)));
        end = buffer.indexOf("\n\n");
      }
    }
  };
  void pump().catch(() => undefined); // ends with an abort
  expect(await waitFor(() => events.length > 0, 2000)).toBe(true);
  expect(events[0]?.type).toBe("hello");
  const channel: Channel = { events, close: () => controller.abort() };
  channels.push(channel);
  return channel;
}

describe("agents whose connection drops", () => {
  it("are lost after the grace: the attempt is requeued and another agent leases the task", async () => {
    const fixture = await serve(simpleSweep(1), { disconnectGraceMs: 300 });
    await register(fixture, "a1");
    await register(fixture, "a2");
    const channel = await openChannel(fixture, "a1");
    const first = await leaseTask(fixture, "a1");
    expect((await agentView(fixture, "a1"))?.state).toBe("connected");

    channel.close();
    const droppedAt = Date.now();
    expect(await waitFor(async () => (await agentView(fixture, "a1"))?.state === "disconnected", 1000)).toBe(
      true,
    );
    // Within the grace the task stays with a1…
    expect(await lease(fixture, "a2")).toMatchObject({ lease: null, leases: [], done: false });
    // …and a waiting lease gets it the moment the grace runs out.
    const second = await lease(fixture, "a2", 5000);
    const waited = Date.now() - droppedAt;
    expect(second.lease?.task.id).toBe(first.taskId);
    expect(waited).toBeGreaterThanOrEqual(250);
    expect(waited).toBeLessThan(2000);

    const lost = await agentView(fixture, "a1");
    expect(lost).toMatchObject({ state: "lost", lost_reason: "connection closed", running: 0 });
    const attempt = await fixture.db.one<{ outcome: string; error: string }>(
      "SELECT outcome, error FROM attempts WHERE id = $1",
      [first.attemptId],
    );
    expect(attempt).toEqual({ outcome: "lost", error: "agent lost: connection closed" });
    expect(await heartbeat(fixture, "a1", [first.attemptId])).toEqual({ stale: [first.attemptId] });
    expect(fixture.warnings.some((line) => line.includes("agent a1 lost (connection closed)"))).toBe(true);
  });

  it("lose nothing when they reconnect within the grace", async () => {
    const fixture = await serve(simpleSweep(2), { disconnectGraceMs: 300 });
    await register(fixture, "a1");
    const channel = await openChannel(fixture, "a1");
    const first = await leaseTask(fixture, "a1");
    channel.close();
    await sleep(100);
    const again = await openChannel(fixture, "a1");
    await sleep(600);
    expect(await taskState(fixture, first.taskId)).toBe("running");
    expect(await agentView(fixture, "a1")).toMatchObject({
      state: "connected",
      lost_reason: null,
      running: 1,
    });
    expect(await heartbeat(fixture, "a1", [first.attemptId])).toEqual({ stale: [] });

    // The open channel carries cancels of the agent's running tasks.
    await post(fixture, "/cancel", { taskIds: [first.taskId] });
    expect(await waitFor(() => again.events.some((event) => event.type === "cancel"), 2000)).toBe(true);
    expect(again.events.find((event) => event.type === "cancel")).toEqual({
      type: "cancel",
      attemptIds: [first.attemptId],
    });
  });
});

describe("leases that run out", () => {
  it("requeue a silent agent's tasks and mark it lost (lease expired)", async () => {
    const fixture = await serve(simpleSweep(2), { leaseMs: 600 });
    const settings = await register(fixture, "silent");
    expect(settings).toMatchObject({ leaseMs: 600, heartbeatMs: 250 });
    await register(fixture, "alive");
    const silent = await leaseTask(fixture, "silent");
    const alive = await leaseTask(fixture, "alive");
    const beat = setInterval(() => void heartbeat(fixture, "alive", [alive.attemptId]), 150);
    try {
      expect(await waitFor(async () => (await taskState(fixture, silent.taskId)) === "pending", 4000)).toBe(
        true,
      );
      expect(await agentView(fixture, "silent")).toMatchObject({
        state: "lost",
        lost_reason: "lease expired",
      });
      // The heartbeating agent keeps its lease well past leaseMs.
      await sleep(700);
      expect(await taskState(fixture, alive.taskId)).toBe("running");
      expect(await agentView(fixture, "alive")).toMatchObject({ state: "connected", running: 1 });
    } finally {
      clearInterval(beat);
    }
    const requeued = await leaseTask(fixture, "alive");
    expect(requeued.taskId).toBe(silent.taskId);
  });

  it("accept a late success only while the task has no result, never writing a second row", async () => {
    const fixture = await serve(simpleSweep(2), { leaseMs: 600 });
    await register(fixture, "slow");
    await register(fixture, "other");
    // Task 1: the requeued attempt's success comes first and is kept; the new attempt's is not.
    const stale1 = await leaseTask(fixture, "slow");
    expect(await waitFor(async () => (await taskState(fixture, stale1.taskId)) === "pending", 4000)).toBe(
      true,
    );
    const fresh1 = await leaseTask(fixture, "other");
    expect(fresh1.taskId).toBe(stale1.taskId);
    expect(await finish(fixture, "slow", stale1.attemptId, 0.11)).toEqual({
      accepted: true,
      taskState: "succeeded",
    });
    expect(await heartbeat(fixture, "other", [fresh1.attemptId])).toEqual({ stale: [fresh1.attemptId] });
    expect(await finish(fixture, "other", fresh1.attemptId, 0.22)).toMatchObject({ accepted: false });
    expect(await finish(fixture, "slow", stale1.attemptId, 0.33)).toMatchObject({ accepted: false });

    // Task 2: the new attempt finishes first; the requeued attempt's late success is ignored.
    const stale2 = await leaseTask(fixture, "slow");
    expect(await waitFor(async () => (await taskState(fixture, stale2.taskId)) === "pending", 4000)).toBe(
      true,
    );
    const fresh2 = await leaseTask(fixture, "other");
    expect(await finish(fixture, "other", fresh2.attemptId, 0.44)).toEqual({
      accepted: true,
      taskState: "succeeded",
    });
    expect(await finish(fixture, "slow", stale2.attemptId, 0.55)).toMatchObject({ accepted: false });

    await fixture.server.coordinator.drainResults();
    const rows = csvRows(fixture.dir);
    expect(rows).toHaveLength(2);
    expect(rows.join("\n")).toContain("0.11");
    expect(rows.join("\n")).toContain("0.44");
    for (const value of ["0.22", "0.33", "0.55"]) expect(rows.join("\n")).not.toContain(value);
  });

  it("do not make a heartbeating agent lost when it stops renewing a cancelled or never-received lease", async () => {
    const fixture = await serve(simpleSweep(3), { leaseMs: 600 });
    await register(fixture, "a1", 3);
    const cancelled = await leaseTask(fixture, "a1");
    const running = await leaseTask(fixture, "a1");
    // A lease whose answer the agent never got: it never names this attempt.
    const orphan = await leaseTask(fixture, "a1");
    await post(fixture, "/cancel", { taskIds: [cancelled.taskId] });
    let named = [cancelled.attemptId, running.attemptId];
    const beat = setInterval(async () => {
      const { stale } = await heartbeat(fixture, "a1", named).catch(() => ({ stale: [] as number[] }));
      named = named.filter((id) => !stale.includes(id)); // the agent stops what is stale
    }, 150);
    try {
      expect(await waitFor(async () => (await taskState(fixture, orphan.taskId)) === "pending", 4000)).toBe(
        true,
      );
      await sleep(1200); // more sweeps of expired leases
      expect(named).toEqual([running.attemptId]);
      expect(await taskState(fixture, running.taskId)).toBe("running");
      expect(await taskState(fixture, cancelled.taskId)).toBe("cancelled");
      expect(await agentView(fixture, "a1")).toMatchObject({ state: "connected", lost_reason: null });
      const open = await fixture.db.all<{ id: number }>("SELECT id FROM attempts WHERE ended_at IS NULL");
      expect(open).toEqual([{ id: running.attemptId }]);
    } finally {
      clearInterval(beat);
    }
    expect((await leaseTask(fixture, "a1")).taskId).toBe(orphan.taskId);
  });
});

describe("a coordinator whose sweep has finished", () => {
  it("waits for an agent it heard from only by a report to hear done, though the lease was its predecessor's", async () => {
    const fixture = await serve(simpleSweep(1), {});
    await register(fixture, "a1", 1);
    const { attemptId } = await leaseTask(fixture, "a1");
    // The coordinator restarts; the agent's next lease sleeps out a backoff, so the successor
    // hears only its report, which finishes the sweep.
    await fixture.server.close();
    fixture.server = await startServer(fixture.db, {
      stateDir: fixture.stateDir,
      host: "127.0.0.1",
      port: 0,
      tokens: { agent: AGENT_TOKEN, viewer: VIEWER_TOKEN, admin: ADMIN_TOKEN },
      warn: () => undefined,
    });
    let finished = false;
    const serving = fixture.server.finished().then(() => {
      finished = true;
    });
    await post(fixture, `/attempts/${attemptId}/finish`, {
      agentId: "a1",
      outcome: { kind: "succeeded", metrics: { loss: 1 }, wallSeconds: 1 },
    });
    await sleep(1000);
    expect(finished).toBe(false); // it would have exited, leaving the agent to retry a dead URL
    expect((await lease(fixture, "a1")).done).toBe(true);
    await post(fixture, "/goodbye", { agentId: "a1" });
    const saidBye = Date.now();
    await serving;
    expect(Date.now() - saidBye).toBeLessThan(1000);
  });
});
