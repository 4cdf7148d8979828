/**
 * End to end: a sweep's `notify:` entries through real `labsweep run` processes and a webhook
 * receiver on loopback (started and stopped by each test). Each event reaches each entry once:
 * through an endpoint failing twice, and across a kill -9 of the coordinator between recording an
 * event and marking it sent (the receiver dedupes by the payload's `id`).
 * Run `npm run build` first: these tests run bin/labsweep.js, which runs dist/.
 */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type CliResult, runCli, startCli, tempDir, watch, writeFile } from "./helpers/cli.js";

interface Received {
  body: Record<string, unknown> & { id: string; event: string; text: string };
  url: string;
  answered: number;
}

/**
 * A webhook receiver on 127.0.0.1: `answer(n)` gives the status of the n-th POST (1-based), or
 * null to never answer it (the request hangs until the server closes).
 */
async function receiver(answer: (n: number) => number | null = () => 200) {
  const received: Received[] = [];
  const server: Server = createServer((request, response) => {
    let text = "";
    request.on("data", (chunk: Buffer) => {
      text += chunk.toString();
    });
    request.on("end", () => {
      const status = answer(received.length + 1);
      received.push({ body: JSON.parse(text), url: request.url ?? "", answered: status ?? 0 });
      if (status === null) return;
      response.statusCode = status;
      response.end(status < 300 ? "ok" : "temporarily broken");
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/hook/T0K3N-secret?key=S3CR3T`, received };
}

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** Distinct events by their idempotency key: what a receiver that dedupes keeps. */
const distinct = (received: Received[]): Received[] => [
  ...new Map(received.map((entry) => [entry.body.id, entry])).values(),
];

function expectNoSecret(result: CliResult | string): void {
  const text = typeof result === "string" ? result : result.stdout + result.stderr;
  expect(text).not.toContain("T0K3N");
  expect(text).not.toContain("S3CR3T");
}

function lines(path: string): string[] {
  return existsSync(path) ? readFileSync(path, "utf8").split("\n").filter(Boolean) : [];
}

describe("notify: through labsweep run", () => {
  it("task_failed reaches a webhook that fails twice, once; phase, sweep and failure_rate run commands with the event in their environment", async () => {
    const hook = await receiver((n) => (n <= 2 ? 500 : 200));
    const dir = tempDir();
    // x=2 fails for good (no retries); the others take a few seconds, so the webhook's retries
    // (after 1 s, then 2 s) happen while the sweep runs.
    const config = writeFile(
      dir,
      "sweep.yaml",
      `command: sh -c 'if [ {x} -eq 2 ]; then echo "boom, import error" >&2; exit 1; fi; sleep 3'
retries: 0
notify:
  - on: task_failed
    webhook: ${hook.url}
  - on: phase_finished
    command: echo "$LABSWEEP_EVENT $LABSWEEP_PHASE $LABSWEEP_EVENT_ID" >> phases.txt
  - on: sweep_finished
    command: printf '%s\\n' "$LABSWEEP_EVENT_JSON" >> sweep.txt
  - on: {failure_rate: 0.2}
    command: printf '%s|%s\\n' "$LABSWEEP_EVENT" "$LABSWEEP_EVENT_TEXT" >> rate.txt
  - on: {failure_rate: 0.9}
    command: echo never >> never.txt
train:
  combinations:
    - x: [1, 2, 3]
evaluate:
  after: [train]
  gate: {min_success: 0.5}
  combinations:
    - y: [1]
  command: "true"
`,
    );
    const result = await runCli(["run", config, "--no-dashboard", "--slots", "3"], {
      cwd: dir,
      timeoutMs: 90_000,
    });
    expect(result.code, result.stderr).toBe(1); // a task failed
    expectNoSecret(result);
    expect(result.stderr).toMatch(
      /notify entry .*sweep\.yaml:4 \(on task_failed, webhook http:\/\/127\.0\.0\.1:\d+\/…\): task_failed notification not delivered \(HTTP 500/,
    );

    // Three posts of one event: two failed, the third arrived.
    expect(hook.received.map((post) => post.answered)).toEqual([500, 500, 200]);
    const [failed] = distinct(hook.received);
    expect(distinct(hook.received)).toHaveLength(1);
    expect(failed?.url).toMatch(/^\/hook\/T0K3N-secret\?key=S3CR3T$/);
    expect(failed?.body).toMatchObject({
      event: "task_failed",
      phase: "train",
      task: { params: { x: 2 }, attempt: 1, exit_code: 1 },
      sweep: { name: "sweep", configs: [config] },
    });
    expect(failed?.body.text).toContain("failed for good");
    expect(failed?.body.content).toBe(failed?.body.text);
    expect(typeof failed?.body.time).toBe("string");

    const phases = lines(join(dir, "phases.txt"));
    expect(phases.map((line) => line.split(" ").slice(0, 2).join(" ")).sort()).toEqual([
      "phase_finished evaluate",
      "phase_finished train",
    ]);
    const sweep = lines(join(dir, "sweep.txt")).map((line) => JSON.parse(line));
    expect(sweep).toHaveLength(1);
    expect(sweep[0]).toMatchObject({
      event: "sweep_finished",
      counts: { total: 4, succeeded: 3, failed: 1 },
    });
    expect(sweep[0].id).toMatch(/^[0-9a-f-]{36}$/);
    const rate = lines(join(dir, "rate.txt"));
    expect(rate).toHaveLength(1);
    expect(rate[0]).toMatch(/^failure_rate\|labsweep sweep: .*% of finished tasks failed/);
    expect(existsSync(join(dir, "never.txt"))).toBe(false);

    // Run again: nothing new happened, so nothing is sent again.
    const again = await runCli(["run", config, "--no-dashboard"], { cwd: dir, timeoutMs: 60_000 });
    expect(again.code).toBe(1);
    expect(hook.received).toHaveLength(3);
    expect(lines(join(dir, "phases.txt"))).toHaveLength(2);
    expect(lines(join(dir, "sweep.txt"))).toHaveLength(1);
    expect(lines(join(dir, "rate.txt"))).toHaveLength(1);
  }, 150_000);

  it("an event recorded but not yet sent when the coordinator is killed -9 is sent after the restart, once", async () => {
    // The first POST never gets an answer: the coordinator is mid-delivery when it dies.
    const hook = await receiver((n) => (n === 1 ? null : 200));
    const dir = tempDir();
    writeFile(dir, "slow", "");
    const config = writeFile(
      dir,
      "sweep.yaml",
      `command: sh -c 'if [ {x} -eq 1 ]; then exit 3; fi; while [ -e slow ]; do sleep 0.1; done'
retries: 0
notify:
  - on: task_failed
    webhook: ${hook.url}
exp:
  combinations:
    - x: [1, 2]
`,
    );
    const first = watch(startCli(["run", config, "--no-dashboard", "--slots", "2"], { cwd: dir }));
    const deadline = Date.now() + 30_000;
    while (hook.received.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(hook.received, first.output()).toHaveLength(1);
    first.child.kill("SIGKILL");
    await first.result;

    rmSync(join(dir, "slow"));
    const second = await runCli(["run", config, "--no-dashboard"], { cwd: dir, timeoutMs: 60_000 });
    expect(second.code, second.stderr).toBe(1);
    expectNoSecret(second);
    // Sent again (at least once), and the receiver keeps one event: the same id both times.
    expect(hook.received).toHaveLength(2);
    expect(distinct(hook.received)).toHaveLength(1);
    expect(hook.received[1]?.body).toMatchObject({ event: "task_failed", task: { params: { x: 1 } } });
  }, 120_000);
});

describe("labsweep notify --test", () => {
  it("sends a test event to every entry and says per entry how it went", async () => {
    const hook = await receiver();
    const refused = await receiver(() => 404);
    const dir = tempDir();
    const config = writeFile(
      dir,
      "sweep.yaml",
      `command: "true"
notify:
  - on: sweep_finished
    webhook: ${hook.url}
  - on: task_failed
    command: printf '%s %s' "$LABSWEEP_EVENT" "$LABSWEEP_SWEEP" > test-event.txt
  - on: agent_lost
    webhook: ${refused.url}
  - on: phase_finished
    command: echo "no such tool" >&2; exit 7
exp: {}
`,
    );
    const result = await runCli(["notify", "--test", config], { cwd: dir });
    expect(result.code).toBe(1);
    expectNoSecret(result);
    const out = result.stdout.split("\n");
    expect(out[0]).toMatch(
      /^ok {6}notify entry .*sweep\.yaml:3 \(on sweep_finished, webhook http:\/\/127\.0\.0\.1:\d+\/…\)$/,
    );
    expect(out[1]).toMatch(/^ok {6}notify entry .*sweep\.yaml:5 \(on task_failed, command\)$/);
    expect(out[2]).toMatch(/^FAILED {2}notify entry .*sweep\.yaml:7 .*: HTTP 404: temporarily broken$/);
    expect(out[3]).toMatch(/^FAILED {2}notify entry .*sweep\.yaml:9 .*: command exit code 7: no such tool$/);
    expect(out[4]).toBe("2 of 4 notify entries took the test event");
    expect(hook.received).toHaveLength(1);
    expect(hook.received[0]?.body).toMatchObject({ event: "test", sweep: { name: "sweep" } });
    expect(readFileSync(join(dir, "test-event.txt"), "utf8")).toBe("test sweep");
    // No ledger is made for a test.
    expect(existsSync(join(dir, ".labsweep"))).toBe(false);
  });

  it("refuses a bad config naming file:line, and a config without entries", async () => {
    const dir = tempDir();
    const bad = writeFile(
      dir,
      "bad.yaml",
      `command: "true"\nnotify:\n  - on: task_failed\n    webhook: ftp://x/T0K3N\nexp: {}\n`,
    );
    const result = await runCli(["notify", "--test", bad], { cwd: dir });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`${bad}:4:14: notify[0].webhook: uses ftp: only http and https`);
    expectNoSecret(result);
    const none = writeFile(dir, "none.yaml", `command: "true"\nexp: {}\n`);
    const empty = await runCli(["notify", "--test", none], { cwd: dir });
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain("no notify: entries");
  });
});
