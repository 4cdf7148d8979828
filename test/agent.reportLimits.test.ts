/**
 * Reports against the coordinator's request limit, through the real client and port to a real
 * coordinator (its ledger, its Fastify body limit) on 127.0.0.1: leases carry reports by bytes,
 * a refused lease never stops the agent, and a success too large to report ends as a failure.
 * Before these rules a 413 made the agent kill its tasks and exit, or left the attempt open until
 * its lease ran out and the task ran again, for ever.
 */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type CallOptions, CoordinatorClient } from "../src/agent/httpClient.js";
import { HttpPort } from "../src/agent/httpPort.js";
import { Outbox } from "../src/agent/outbox.js";
import type { Capacity } from "../src/protocol/capacity.js";
import { REQUEST_BODY_LIMIT_BYTES } from "../src/protocol/http.js";
import type { AttemptOutcome } from "../src/protocol/interfaces.js";
import { tempDir } from "./helpers/cli.js";
import {
  AGENT_TOKEN,
  agentInfo,
  type Fixture,
  simpleSweep,
  sleep,
  startFixture,
} from "./helpers/coordinatorFixture.js";

const fixtures: Fixture[] = [];
afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.close();
});

async function coordinator(tasks: number, bodyLimit?: number): Promise<Fixture> {
  const fixture = await startFixture(simpleSweep(tasks), bodyLimit ? { bodyLimit } : {});
  fixtures.push(fixture);
  return fixture;
}

/** The real client, noting the size of every lease request it sends. */
class ObservedClient extends CoordinatorClient {
  readonly leaseBytes: number[] = [];
  override call<T>(method: "GET" | "POST", path: string, body?: unknown, options?: CallOptions): Promise<T> {
    if (path === "/lease") this.leaseBytes.push(Buffer.byteLength(JSON.stringify(body)));
    return super.call<T>(method, path, body, options);
  }
}

/**
 * An agent's port to `fixture`. Its outbox sender holds every report until `letGo()`: the one
 * it holds aside, reports wait for leases to carry them.
 */
async function agentOf(fixture: Fixture, slots: number) {
  const warnings: string[] = [];
  const client = new ObservedClient({
    servers: [fixture.server.url],
    token: AGENT_TOKEN,
    warn: (line) => warnings.push(line),
  });
  let open = (): void => undefined;
  const gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  let port: HttpPort | null = null;
  const outbox = new Outbox(
    join(tempDir(), "outbox"),
    async (record, signal) => {
      await gate;
      return (port as HttpPort).deliver(record, signal);
    },
    { warn: (line) => warnings.push(line) },
  );
  port = new HttpPort(client, {
    agentId: "agent-1",
    slots,
    outbox,
    idleWaitMs: 0,
    warn: (line) => warnings.push(line),
  });
  await port.register(agentInfo("agent-1", { slots }));
  const claims = await port.lease({ capacity: capacity(slots), max: slots, waitMs: 0 });
  expect(claims).toHaveLength(slots);
  return { port, outbox, client, warnings, claims, letGo: () => open() };
}

function capacity(slots: number): Capacity {
  return { freeSlots: slots, freeCpus: Number.POSITIVE_INFINITY, gpus: [], hasGpus: false, tags: [] };
}

const failed: AttemptOutcome = {
  kind: "failed",
  exitCode: 1,
  signal: null,
  error: "exit code 1",
  wallSeconds: 2,
};

/** Leases (nothing is left to lease) until only the report the sender holds is still pending. */
async function leaseUntilCarried(port: HttpPort, outbox: Outbox): Promise<void> {
  for (let round = 0; round < 20 && outbox.pending().length > 1; round++) {
    await port.lease({ capacity: capacity(1), max: 1, waitMs: 0 });
    // Recorded reports leave the outbox just after the answer.
    for (let i = 0; i < 50 && outbox.pending().length > 1; i++) await sleep(10);
  }
}

async function attemptEnds(
  fixture: Fixture,
): Promise<Array<{ outcome: string | null; error: string | null }>> {
  return fixture.db.all("SELECT outcome, error FROM attempts ORDER BY id");
}

describe("reports and the coordinator's request limit", () => {
  it("a lease carries reports up to half the body limit; the rest go in the next leases", async () => {
    const fixture = await coordinator(21);
    const { port, outbox, client, warnings, claims, letGo } = await agentOf(fixture, 21);
    // 21 reports of 60 KB: the 20 the sender does not hold are 1.2 MB, over the 1 MiB limit.
    const logTail = "x".repeat(60_000);
    for (const claim of claims) await port.finish(claim.attemptId, { outcome: failed, logTail });
    client.leaseBytes.length = 0;
    await leaseUntilCarried(port, outbox);
    expect(outbox.pending()).toHaveLength(1);
    const carrying = client.leaseBytes.filter((bytes) => bytes > 60_000);
    expect(carrying.length).toBeGreaterThanOrEqual(3);
    for (const bytes of client.leaseBytes) expect(bytes).toBeLessThan(REQUEST_BODY_LIMIT_BYTES / 2 + 4096);
    expect(warnings.join("\n")).not.toMatch(/refused/);
    letGo();
    expect(await outbox.flush({ timeoutMs: 10_000 })).toBe(true);
    const ends = await attemptEnds(fixture);
    expect(ends).toHaveLength(21);
    expect(ends.every((end) => end.outcome === "failed")).toBe(true);
  });

  it("a lease refused as too large (413) does not fail: the port leases on and its reports go one by one", async () => {
    // 30 KB reports: one fits the 48 KiB limit, two carried together do not.
    const fixture = await coordinator(4, 48 * 1024);
    const { port, outbox, warnings, claims, letGo } = await agentOf(fixture, 3);
    const logTail = "y".repeat(30_000);
    for (const claim of claims) await port.finish(claim.attemptId, { outcome: failed, logTail });
    // Before, this threw HttpError 413, and the agent's loop ended: its running tasks were
    // terminated and the agent exited.
    const leased = await port.lease({ capacity: capacity(1), max: 1, waitMs: 0 });
    expect(leased.map((claim) => claim.task.id)).toEqual([4]);
    expect(warnings.join("\n")).toMatch(
      /refused a lease carrying 2 report\(s\) \(413: .*\); they go one by one/,
    );
    letGo();
    expect(await outbox.flush({ timeoutMs: 10_000 })).toBe(true);
    const ends = await attemptEnds(fixture);
    expect(ends.slice(0, 3).map((end) => end.outcome)).toEqual(["failed", "failed", "failed"]);
    expect(warnings.join("\n")).not.toMatch(/was refused/); // nothing set aside
  });

  it("a success whose report the coordinator refuses as too large ends as a failed attempt, saying so", async () => {
    const fixture = await coordinator(1, 16 * 1024);
    const { port, outbox, claims, letGo } = await agentOf(fixture, 1);
    letGo();
    const metrics = { curve: "z".repeat(20_000) };
    await port.finish((claims[0] as { attemptId: number }).attemptId, {
      outcome: { kind: "succeeded", metrics, wallSeconds: 3 },
    });
    expect(await outbox.flush({ timeoutMs: 10_000 })).toBe(true);
    const [end] = await attemptEnds(fixture);
    expect(end?.outcome).toBe("failed");
    expect(end?.error).toMatch(
      /^the result \(19\.\d KiB of JSON\) is more than the coordinator takes \(413: /,
    );
    // retries: 0 in this sweep: the failure is final, not a lease left to run out.
    expect(await fixture.db.one("SELECT state, attempt_id FROM tasks")).toEqual({
      state: "failed",
      attempt_id: null,
    });
  });
});
