/**
 * The agent's outbox: every finish report is on the agent's disk (temp, fsync, rename) before it
 * is sent, survives an unreachable coordinator and a restart of the agent, and is deleted only
 * after a 2xx. Sent through the real HTTP client to a real network peer on 127.0.0.1.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CoordinatorClient, UnauthorizedError } from "../src/agent/httpClient.js";
import { HttpPort } from "../src/agent/httpPort.js";
import { Outbox, type OutboxRecord } from "../src/agent/outbox.js";
import { tempDir } from "./helpers/cli.js";
import { deadUrl, json, type PeerHandler, startPeer } from "./helpers/peer.js";

function record(attemptId: number, extra: Partial<OutboxRecord> = {}): OutboxRecord {
  return {
    attemptId,
    request: {
      agentId: "agent-1",
      outcome: { kind: "succeeded", metrics: { loss: attemptId / 10 }, wallSeconds: 1.5 },
    },
    ...extra,
  };
}

/** An outbox sending through a real client and port to `servers`. */
function outboxTo(servers: string[], dir = join(tempDir(), "outbox")) {
  const warnings: string[] = [];
  const errors: unknown[] = [];
  const client = new CoordinatorClient({ servers, token: "t", warn: (line) => warnings.push(line) });
  let port: HttpPort | null = null;
  const outbox = new Outbox(dir, (item, signal) => (port as HttpPort).deliver(item, signal), {
    warn: (line) => warnings.push(line),
    onError: (error) => errors.push(error),
  });
  port = new HttpPort(client, { agentId: "agent-1", slots: 1, outbox });
  return { outbox, port, dir, warnings, errors };
}

/** A coordinator accepting every report (and log chunk); `accepted` false from the second of an attempt. */
const accepting = (): PeerHandler => {
  const seen = new Set<string>();
  return (request, response) => {
    const first = !seen.has(request.url);
    seen.add(request.url);
    if (request.url.endsWith("/log")) return json(response, 200, { ok: true });
    json(response, 200, { accepted: first, taskState: first ? "succeeded" : "ignored" });
  };
};

describe("the outbox", () => {
  it("writes the report to disk before sending it, and deletes it after a 2xx", async () => {
    let fileWhenSent: unknown = null;
    const dir = join(tempDir(), "outbox");
    const peer = await startPeer((request, response) => {
      fileWhenSent = JSON.parse(readFileSync(join(dir, "7.json"), "utf8"));
      json(response, 200, { accepted: true, taskState: "succeeded" });
      void request;
    });
    const { outbox } = outboxTo([peer.url], dir);
    await outbox.put(record(7, { request: { ...record(7).request, logTail: "last line" } }));
    expect(await outbox.flush({ timeoutMs: 5000 })).toBe(true);
    expect(fileWhenSent).toEqual(record(7, { request: { ...record(7).request, logTail: "last line" } }));
    expect(peer.requests).toEqual([
      expect.objectContaining({
        method: "POST",
        url: "/api/v1/attempts/7/finish",
        body: {
          agentId: "agent-1",
          outcome: { kind: "succeeded", metrics: { loss: 0.7 }, wallSeconds: 1.5 },
          logTail: "last line",
        },
      }),
    ]);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("writes a report that need not be durable whole too: no temp file left, the same record read back", async () => {
    const dir = join(tempDir(), "outbox");
    const sent: OutboxRecord[] = [];
    // Held back from sending, so the file is what a next incarnation would find.
    const writer = new Outbox(
      dir,
      async (item) => {
        sent.push(item);
        return "sent";
      },
      { sendDelayMs: () => 60_000 },
    );
    await writer.put(record(5), { durable: false });
    expect(readdirSync(dir)).toEqual(["5.json"]);
    expect(JSON.parse(readFileSync(join(dir, "5.json"), "utf8"))).toEqual(record(5));
    await writer.close();
    expect(sent).toEqual([]);
  });

  it("keeps reports while the coordinator is unreachable and sends them when it is back", async () => {
    const dead = await deadUrl();
    const { outbox, dir, warnings } = outboxTo([dead.url]);
    await outbox.put(record(1));
    await outbox.put(record(2));
    expect(await outbox.flush({ timeoutMs: 700 })).toBe(false);
    expect(readdirSync(dir).sort()).toEqual(["1.json", "2.json"]);
    expect(outbox.pending()).toEqual([1, 2]);
    expect(warnings[0]).toMatch(/cannot reach the coordinator .*ECONNREFUSED/);
    const peer = await startPeer(accepting(), dead.port);
    expect(await outbox.flush({ timeoutMs: 15_000 })).toBe(true);
    expect(peer.requests.map((request) => request.url)).toEqual([
      "/api/v1/attempts/1/finish",
      "/api/v1/attempts/2/finish",
    ]);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("sends what a previous incarnation left first, oldest attempt first, and drops torn temp files", async () => {
    const dir = join(tempDir(), "outbox");
    mkdirSync(dir, { recursive: true });
    for (const id of [12, 3]) writeFileSync(join(dir, `${id}.json`), `${JSON.stringify(record(id))}\n`);
    writeFileSync(join(dir, ".5.json.999.tmp"), '{"attemptId": 5, "requ'); // cut short by a crash
    const peer = await startPeer(accepting());
    const { outbox } = outboxTo([peer.url], dir);
    expect(outbox.pending()).toEqual([3, 12]);
    expect(existsSync(join(dir, ".5.json.999.tmp"))).toBe(false);
    await outbox.put(record(4));
    expect(await outbox.flush({ timeoutMs: 5000 })).toBe(true);
    expect(peer.requests.map((request) => request.url)).toEqual([
      "/api/v1/attempts/3/finish",
      "/api/v1/attempts/12/finish",
      "/api/v1/attempts/4/finish",
    ]);
  });

  it("deletes a report the coordinator already had (accepted: false): re-sends are harmless", async () => {
    const peer = await startPeer(accepting());
    const { outbox, dir } = outboxTo([peer.url]);
    await outbox.put(record(9));
    await outbox.flush({ timeoutMs: 5000 });
    await outbox.put(record(9)); // sent again, e.g. after a crash between the 2xx and the delete
    expect(await outbox.flush({ timeoutMs: 5000 })).toBe(true);
    expect(peer.requests).toHaveLength(2);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("retries a report through 5xx answers", async () => {
    let calls = 0;
    const peer = await startPeer((_request, response) => {
      if (++calls === 1)
        return json(response, 500, { error: "internal error in the coordinator (see its log)" });
      json(response, 200, { accepted: true, taskState: "succeeded" });
    });
    const { outbox } = outboxTo([peer.url]);
    await outbox.put(record(1));
    expect(await outbox.flush({ timeoutMs: 5000 })).toBe(true);
    expect(calls).toBe(2);
  });

  it("sets aside a report the coordinator refuses for good (4xx) and goes on with the rest", async () => {
    const peer = await startPeer((request, response) => {
      if (request.url.includes("/5/"))
        return json(response, 409, { error: "attempt 5 belongs to another agent" });
      json(response, 200, { accepted: true, taskState: "succeeded" });
    });
    const { outbox, dir, warnings } = outboxTo([peer.url]);
    await outbox.put(record(5));
    await outbox.put(record(6));
    expect(await outbox.flush({ timeoutMs: 5000 })).toBe(true);
    expect(readdirSync(dir)).toEqual(["refused"]);
    expect(readdirSync(join(dir, "refused"))).toEqual(["5.json"]);
    expect(warnings).toContainEqual(
      expect.stringContaining(
        "the report of attempt 5 was refused (409: attempt 5 belongs to another agent)",
      ),
    );
    expect(peer.requests.map((request) => request.url)).toEqual([
      "/api/v1/attempts/5/finish",
      "/api/v1/attempts/6/finish",
    ]);
  });

  it("sends the log's unsent end before the report", async () => {
    const peer = await startPeer(accepting());
    const { outbox } = outboxTo([peer.url]);
    await outbox.put(record(2, { log: { offset: 4096, text: "epoch 9\ndone\n" } }));
    expect(await outbox.flush({ timeoutMs: 5000 })).toBe(true);
    expect(peer.requests.map((request) => [request.url, request.body])).toEqual([
      ["/api/v1/attempts/2/log", { agentId: "agent-1", offset: 4096, text: "epoch 9\ndone\n" }],
      ["/api/v1/attempts/2/finish", record(2).request],
    ]);
  });

  it("sends a large log end in pieces a request may carry, at contiguous offsets", async () => {
    const peer = await startPeer(accepting());
    const { outbox } = outboxTo([peer.url]);
    const text = `${"é".repeat(100 * 1024)}${"z".repeat(100 * 1024)}`; // 300 KiB
    await outbox.put(record(2, { log: { offset: 1000, text } }));
    expect(await outbox.flush({ timeoutMs: 5000 })).toBe(true);
    const logs = peer.requests
      .filter((request) => request.url.endsWith("/log"))
      .map((request) => request.body);
    const pieces = logs as Array<{ offset: number; text: string }>;
    expect(pieces.length).toBe(3);
    expect(pieces.map((piece) => piece.text).join("")).toBe(text);
    let offset = 1000;
    for (const piece of pieces) {
      expect(piece.offset).toBe(offset);
      expect(Buffer.byteLength(piece.text)).toBeLessThanOrEqual(128 * 1024);
      offset += Buffer.byteLength(piece.text);
    }
    expect(peer.requests.at(-1)?.url).toBe("/api/v1/attempts/2/finish");
  });

  it("still sends the report when the coordinator refuses the log chunk", async () => {
    const peer = await startPeer((request, response) => {
      if (request.url.endsWith("/log")) return json(response, 413, { error: "request body too large" });
      json(response, 200, { accepted: true, taskState: "failed" });
    });
    const { outbox } = outboxTo([peer.url]);
    await outbox.put(record(2, { log: { offset: 0, text: "x" } }));
    expect(await outbox.flush({ timeoutMs: 5000 })).toBe(true);
    expect(peer.requests.at(-1)?.url).toBe("/api/v1/attempts/2/finish");
  });

  it("stops on a rejected token, keeping the report for the next start", async () => {
    const peer = await startPeer((_request, response) => json(response, 401, { error: "wrong token" }));
    const { outbox, dir, errors } = outboxTo([peer.url]);
    await outbox.put(record(1));
    expect(await outbox.flush({ timeoutMs: 5000 })).toBe(false);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(UnauthorizedError);
    expect(readdirSync(dir)).toEqual(["1.json"]);
  });

  it("close() stops a sender stuck on an unreachable coordinator; the file stays", async () => {
    const dead = await deadUrl();
    const { outbox, dir } = outboxTo([dead.url]);
    await outbox.put(record(1));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const closing = Date.now();
    await outbox.close();
    expect(Date.now() - closing).toBeLessThan(500);
    expect(readdirSync(dir)).toEqual(["1.json"]);
  });
});

describe("reports carried by a lease", () => {
  /** An outbox whose sender blocks on each report until the test lets it go. */
  function heldOutbox() {
    const delivered: number[] = [];
    const gates = new Map<number, () => void>();
    const outbox = new Outbox(join(tempDir(), "outbox"), async (item) => {
      await new Promise<void>((resolve) => gates.set(item.attemptId, resolve));
      delivered.push(item.attemptId);
      return "sent";
    });
    const letGo = async (attemptId: number) => {
      while (!gates.has(attemptId)) await new Promise((resolve) => setTimeout(resolve, 5));
      gates.get(attemptId)?.();
    };
    return { outbox, delivered, letGo };
  }

  it("hands out only reports the sender is not sending; settled ones are deleted, released ones sent", async () => {
    const { outbox, delivered, letGo } = heldOutbox();
    await outbox.put(record(1)); // the sender takes it at once, and holds
    await outbox.put(record(2));
    await outbox.put(record(3));
    expect(outbox.carry(10).map((item) => item.attemptId)).toEqual([2, 3]);
    expect(outbox.carry(10)).toEqual([]); // carried already
    await outbox.settle([{ attemptId: 2 }]);
    expect(existsSync(join(outbox.dir, "2.json"))).toBe(false);
    outbox.release([3]);
    await letGo(1);
    await letGo(3);
    expect(await outbox.flush({ timeoutMs: 5000 })).toBe(true);
    expect(delivered).toEqual([1, 3]); // 2 went with the lease, never through the sender
    expect(readdirSync(outbox.dir)).toEqual([]);
  });

  it("with a send delay, a report waits for a lease to carry it; one no lease takes is sent on its own", async () => {
    const delivered: Array<{ id: number; at: number }> = [];
    const start = Date.now();
    const outbox = new Outbox(
      join(tempDir(), "outbox"),
      async (item) => {
        delivered.push({ id: item.attemptId, at: Date.now() - start });
        return "sent";
      },
      { sendDelayMs: () => 300 },
    );
    await outbox.put(record(1));
    await outbox.put(record(2));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(delivered).toEqual([]); // still waiting for a lease
    expect(outbox.carry(1).map((item) => item.attemptId)).toEqual([1]);
    await outbox.settle([{ attemptId: 1 }]);
    const sent = Date.now();
    while (delivered.length === 0 && Date.now() - sent < 2000)
      await new Promise((resolve) => setTimeout(resolve, 10));
    expect(delivered.map((item) => item.id)).toEqual([2]); // only the one no lease took
    // flush() does not wait out a delay.
    await outbox.put(record(3));
    const flushing = Date.now();
    expect(await outbox.flush({ timeoutMs: 5000 })).toBe(true);
    expect(Date.now() - flushing).toBeLessThan(250);
    expect(delivered.map((item) => item.id)).toEqual([2, 3]);
  });

  it("sets aside a carried report the coordinator refused", async () => {
    const { outbox } = heldOutbox();
    await outbox.put(record(1));
    await outbox.put(record(2));
    expect(outbox.carry(1).map((item) => item.attemptId)).toEqual([2]);
    await outbox.settle([{ attemptId: 2, refused: "409: attempt 2 belongs to another agent" }]);
    expect(existsSync(join(outbox.dir, "refused", "2.json"))).toBe(true);
    expect(outbox.pending()).toEqual([1]);
  });

  it("a lease in sound contact carries waiting reports; after trouble it waits for the outbox first", async () => {
    const leases: Array<{ at: number; reports: Array<{ attemptId: number }> }> = [];
    const peer = await startPeer((request, response) => {
      if (request.url === "/api/v1/agents")
        return json(response, 200, { leaseMs: 12_000, heartbeatMs: 3000, openAttempts: [] });
      if (request.url !== "/api/v1/lease") return json(response, 404, { error: "no such endpoint" });
      const body = request.body as { reports: Array<{ attemptId: number }> };
      leases.push({ at: Date.now(), reports: body.reports });
      json(response, 200, {
        lease: null,
        leases: [],
        done: false,
        reports: body.reports.map(({ attemptId }) => ({ attemptId, accepted: true })),
      });
    });
    const { outbox, delivered, letGo } = heldOutbox();
    const client = new CoordinatorClient({ servers: [peer.url], token: "t", warn: () => undefined });
    const port = new HttpPort(client, { agentId: "agent-1", slots: 1, outbox, idleWaitMs: 0 });
    await port.register({ agentId: "agent-1" } as Parameters<HttpPort["register"]>[0]);
    await outbox.put(record(1)); // being sent by the sender, held
    await outbox.put(record(2));
    await port.lease({ capacity: { freeSlots: 1, freeCpus: 1, gpus: [], hasGpus: false, tags: [] } });
    expect(leases[0]?.reports.map((report) => report.attemptId)).toEqual([2]);
    for (let i = 0; i < 100 && outbox.pending().includes(2); i++)
      await new Promise((resolve) => setTimeout(resolve, 10));
    expect(outbox.pending()).toEqual([1]);

    // A port that has not heard the coordinator lately (here: never) doubts the contact, so its
    // lease waits until the sender has delivered report 1, and carries nothing.
    const sentAt = new Promise<number>((resolve) =>
      setTimeout(async () => {
        await letGo(1);
        resolve(Date.now());
      }, 300),
    );
    const troubled = new HttpPort(client, { agentId: "agent-1", slots: 1, outbox, idleWaitMs: 0 });
    await troubled.lease({ capacity: { freeSlots: 1, freeCpus: 1, gpus: [], hasGpus: false, tags: [] } });
    expect(delivered).toEqual([1]);
    expect(leases[1]?.at).toBeGreaterThanOrEqual(await sentAt);
    expect(leases[1]?.reports).toEqual([]);
  });
});
