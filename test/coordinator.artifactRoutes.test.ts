/**
 * The artifact routes over real HTTP on 127.0.0.1 (raw paths through node:http, which sends a
 * path as written: fetch would resolve `..` before it left): uploads in pieces resume at the
 * offset the coordinator holds and are checked before they are stored; hostile paths are 400 and
 * write nothing; the viewer lists and downloads a task's files as attachments.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { API_PREFIX } from "../src/protocol/http.js";
import {
  agentAuth,
  agentInfo,
  capacityOf,
  type Fixture,
  simpleSweep,
  startFixture,
  viewerAuth,
} from "./helpers/coordinatorFixture.js";

const fixtures: Fixture[] = [];
afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.close();
});

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json(): Record<string, unknown>;
}

/** One request with `path` sent byte for byte as given. */
function raw(
  fixture: Fixture,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: Buffer,
): Promise<Answer> {
  const url = new URL(fixture.server.url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, method, path: `${API_PREFIX}${path}`, headers },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () => {
          const data = Buffer.concat(chunks);
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body: data,
            json: () => JSON.parse(data.toString("utf8")) as Record<string, unknown>,
          });
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

async function leasedAttempt(
  fixture: Fixture,
  agentId = "a1",
): Promise<{ attemptId: number; taskId: number }> {
  const json = { ...agentAuth, "content-type": "application/json" };
  const register = await raw(
    fixture,
    "POST",
    "/agents",
    json,
    Buffer.from(JSON.stringify(agentInfo(agentId))),
  );
  expect(register.status, register.body.toString()).toBe(200);
  const body = { agentId, capacity: capacityOf(), waitMs: 0 };
  const leased = await raw(fixture, "POST", "/lease", json, Buffer.from(JSON.stringify(body)));
  const lease = leased.json().lease as { attemptId: number; task: { id: number } };
  return { attemptId: lease.attemptId, taskId: lease.task.id };
}

function sha(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

const octets = { ...agentAuth, "content-type": "application/octet-stream" };

function put(fixture: Fixture, base: string, path: string, data: Buffer, offset: number, whole: Buffer) {
  const query = `?offset=${offset}&size=${whole.length}&sha256=${sha(whole)}`;
  return raw(fixture, "PUT", `${base}/${path}${query}`, octets, data);
}

async function serve(options: Parameters<typeof startFixture>[1] = {}): Promise<Fixture> {
  const fixture = await startFixture(simpleSweep(1), options);
  fixtures.push(fixture);
  return fixture;
}

async function signatureOf(fixture: Fixture, taskId: number): Promise<string> {
  const row = await fixture.db.one<{ signature: string }>("SELECT signature FROM tasks WHERE id = $1", [
    taskId,
  ]);
  return row?.signature as string;
}

describe("artifact uploads", () => {
  it("resume at the offset the coordinator holds, and are stored once whole and checked", async () => {
    const fixture = await serve();
    const { attemptId, taskId } = await leasedAttempt(fixture);
    const base = `/agents/a1/attempts/${attemptId}/artifacts`;
    const whole = Buffer.from("0123456789".repeat(1000));
    const name = "plots/a%20b.txt"; // "plots/a b.txt"

    const first = await put(fixture, base, name, whole.subarray(0, 4000), 0, whole);
    expect(first.status, first.body.toString()).toBe(200);
    expect(first.json()).toEqual({ size: 4000, stored: false });
    const held = await raw(
      fixture,
      "GET",
      `${base}/${name}?size=${whole.length}&sha256=${sha(whole)}`,
      agentAuth,
    );
    expect(held.json()).toEqual({ size: 4000, stored: false });
    // An offset other than what is held is refused, and changes nothing.
    const behind = await put(fixture, base, name, whole.subarray(0, 10), 0, whole);
    expect([behind.status, behind.json().code]).toEqual([409, "upload_offset"]);
    const rest = await put(fixture, base, name, whole.subarray(4000), 4000, whole);
    expect(rest.json()).toEqual({ size: whole.length, stored: true });

    const signature = await signatureOf(fixture, taskId);
    const stored = join(fixture.dir, "out", "artifacts", signature, "plots", "a b.txt");
    expect(readFileSync(stored)).toEqual(whole);
    expect(readdirSync(join(fixture.dir, "out", "artifacts", ".parts"))).toEqual([]);
    const rows = await fixture.db.all("SELECT task_id, attempt_id, path, size, sha256 FROM artifacts");
    expect(rows).toEqual([
      {
        task_id: taskId,
        attempt_id: attemptId,
        path: "plots/a b.txt",
        size: whole.length,
        sha256: sha(whole),
      },
    ]);
    // Sent again (an agent that did not hear the answer): already stored, nothing rewritten.
    expect((await put(fixture, base, name, whole, 0, whole)).json()).toEqual({
      size: whole.length,
      stored: true,
    });
  });

  it("a file that arrives other than declared is not stored: 422, and the part is dropped", async () => {
    const fixture = await serve();
    const { attemptId } = await leasedAttempt(fixture);
    const base = `/agents/a1/attempts/${attemptId}/artifacts`;
    const whole = Buffer.from("the real bytes");
    const corrupted = Buffer.from("the fake bytes");
    const answer = await raw(
      fixture,
      "PUT",
      `${base}/x.txt?offset=0&size=${whole.length}&sha256=${sha(whole)}`,
      octets,
      corrupted,
    );
    expect(answer.status).toBe(422);
    expect(String(answer.json().error)).toMatch(/SHA-256/);
    expect(await fixture.db.all("SELECT * FROM artifacts")).toEqual([]);
    const held = await raw(fixture, "GET", `${base}/x.txt`, agentAuth);
    expect(held.json()).toEqual({ size: 0, stored: false });
    // More bytes than declared: 400, and the part is cut back to what it held.
    const over = await raw(
      fixture,
      "PUT",
      `${base}/x.txt?offset=0&size=3&sha256=${sha(Buffer.from("abc"))}`,
      octets,
      whole,
    );
    expect(over.status).toBe(400);
    expect((await raw(fixture, "GET", `${base}/x.txt`, agentAuth)).json()).toEqual({
      size: 0,
      stored: false,
    });
  });

  it.each([
    ["../escape.txt", "../escape.txt"],
    ["%2e%2e/escape.txt", "%2e%2e/escape.txt"],
    ["plots/../../escape.txt", "plots/../../escape.txt"],
    ["plots/%2E%2E/%2E%2E/escape.txt", "plots/%2E%2E/%2E%2E/escape.txt"],
    ["%2Fetc%2Fescape.txt", "%2Fetc%2Fescape.txt"],
    ["/etc/escape.txt", "/etc/escape.txt"],
    ["a%00b.txt", "a%00b.txt"],
    ["a%5C..%5Cescape.txt", "a%5C..%5Cescape.txt"],
    ["./escape.txt", "./escape.txt"],
    ["plots//escape.txt", "plots//escape.txt"],
    ["a 300-character name", `${"n".repeat(300)}.txt`],
    ["a 1,201-byte path", `${"d/".repeat(600)}x`],
  ])("the path %s is refused with 400 and nothing is written", async (_name, path) => {
    const fixture = await serve();
    const { attemptId } = await leasedAttempt(fixture);
    const data = Buffer.from("evil");
    const base = `/agents/a1/attempts/${attemptId}/artifacts`;
    const answer = await put(fixture, base, path, data, 0, data);
    expect(answer.status, answer.body.toString()).toBe(400);
    expect((await raw(fixture, "GET", `${base}/${path}`, agentAuth)).status).toBe(400);
    expect(existsSync(join(fixture.dir, "out", "artifacts"))).toBe(false);
    expect(existsSync(join(fixture.dir, "escape.txt"))).toBe(false);
    expect(await fixture.db.all("SELECT * FROM artifacts")).toEqual([]);
  });

  it("only the agent holding the attempt, with the agent token, under the size limit", async () => {
    const fixture = await serve({ artifactLimitBytes: 10 });
    const { attemptId } = await leasedAttempt(fixture);
    const small = Buffer.from("tiny");
    const big = Buffer.from("more than ten bytes");
    const foreign = await put(fixture, `/agents/a2/attempts/${attemptId}/artifacts`, "x", small, 0, small);
    expect([foreign.status, foreign.json().code]).toEqual([409, "foreign_attempt"]);
    const unknown = await put(fixture, "/agents/a1/attempts/999999/artifacts", "x", small, 0, small);
    expect([unknown.status, unknown.json().code]).toEqual([404, "unknown_attempt"]);
    const viewer = { ...viewerAuth, "content-type": "application/octet-stream" };
    const path = `/agents/a1/attempts/${attemptId}/artifacts/x?offset=0&size=4&sha256=${sha(small)}`;
    expect((await raw(fixture, "PUT", path, viewer, small)).status).toBe(401);
    const base = `/agents/a1/attempts/${attemptId}/artifacts`;
    const held = await raw(fixture, "GET", `${base}/big?size=${big.length}&sha256=${sha(big)}`, agentAuth);
    expect(held.status).toBe(413);
    expect(String(held.json().error)).toMatch(/--artifact-limit/);
    expect((await put(fixture, base, "big", big, 0, big)).status).toBe(413);
    expect((await put(fixture, base, "x", small, 0, small)).json()).toEqual({ size: 4, stored: true });
  });
});

describe("reading a task's artifacts", () => {
  it("lists them and serves each as an attachment of a type no browser renders", async () => {
    const fixture = await serve();
    const { attemptId, taskId } = await leasedAttempt(fixture);
    const page = Buffer.from("<script>alert(1)</script>");
    const base = `/agents/a1/attempts/${attemptId}/artifacts`;
    expect((await put(fixture, base, "report%20%22x%22.html", page, 0, page)).json()).toMatchObject({
      stored: true,
    });

    const list = await raw(fixture, "GET", `/tasks/${taskId}/artifacts`, viewerAuth);
    expect(list.json().artifacts).toMatchObject([
      { path: 'report "x".html', size: page.length, sha256: sha(page) },
    ]);
    const file = await raw(fixture, "GET", `/tasks/${taskId}/artifacts/report%20%22x%22.html`, viewerAuth);
    expect(file.status).toBe(200);
    expect(file.body).toEqual(page);
    expect(file.headers["content-type"]).toBe("application/octet-stream");
    expect(file.headers["x-content-type-options"]).toBe("nosniff");
    expect(file.headers["content-disposition"]).toBe(
      `attachment; filename="report__x_.html"; filename*=UTF-8''report%20%22x%22.html`,
    );
    expect((await raw(fixture, "GET", `/tasks/${taskId}/artifacts/nothing.txt`, viewerAuth)).status).toBe(
      404,
    );
    expect(
      (await raw(fixture, "GET", `/tasks/${taskId}/artifacts/../../etc/passwd`, viewerAuth)).status,
    ).toBe(400);
    expect((await raw(fixture, "GET", `/tasks/${taskId}/artifacts`, {})).status).toBe(401);
  });
});
