import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { describe, expect, it } from "vitest";
import { type CliResult, startCli, tempDir, type Watched, watch, writeFile } from "./helpers/cli.js";
import { fakeGpuEnv } from "./helpers/fakeGpus.js";
import { startTcpProxy, type TcpProxy } from "./helpers/tcpProxy.js";

const TOKEN = "failover-agent-token";

/** A task that records its shell's pid in `$PIDS_DIR/<attempt id>`, then becomes `sleep`. */
function sweepYaml(count: number, seconds: number): string {
  const xs = Array.from({ length: count }, (_, index) => index + 1).join(", ");
  return [
    `command: ': {x}; echo $$ > "$PIDS_DIR/$LABSWEEP_ATTEMPT_ID"; exec sleep ${seconds}'`,
    "p1:",
    "  output_dir: out",
    "  combinations:",
    `    - x: [${xs}]`,
    "",
  ].join("\n");
}

interface Served extends Watched {
  url: string;
}

/** `labsweep serve` on the project's sweep.yaml; resolves once it printed its URL. */
async function serve(dir: string, args: string[] = []): Promise<Served> {
  const watched = watch(
    startCli(
      ["serve", join(dir, "sweep.yaml"), "--agent-token", TOKEN, "--trust-loopback", "--port", "0", ...args],
      {
        cwd: dir,
      },
    ),
  );
  await watched.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
  const url = (/^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(watched.output()) as RegExpExecArray)[1] as string;
  return { ...watched, url };
}

function agent(serverUrl: string, dir: string, name: string, pids: string): Watched {
  const env = { ...fakeGpuEnv([]), LABSWEEP_GPU_LOCK_DIR: join(dir, "locks"), PIDS_DIR: pids };
  return watch(
    startCli(
      [
        "agent",
        "--server",
        serverUrl,
        "--token",
        TOKEN,
        "--slots",
        "1",
        "--name",
        name,
        "--state",
        join(dir, `agent-${name}`),
        "--grace",
        "1",
      ],
      { env },
    ),
  );
}

function project(count: number, seconds: number): { dir: string; pids: string } {
  const dir = tempDir();
  writeFile(dir, "sweep.yaml", sweepYaml(count, seconds));
  return { dir, pids: tempDir() };
}

interface TaskView {
  task: { id: number; state: string; attempts: number };
  attempts: Array<{ id: number; number: number; worker: string; outcome: string | null }>;
}

async function getTask(url: string, id: number): Promise<TaskView> {
  const response = await fetch(`${url}/api/v1/tasks/${id}`);
  expect(response.status).toBe(200);
  return (await response.json()) as TaskView;
}

function readCsv(path: string): Record<string, string>[] {
  const [header = [], ...rows] = parse(readFileSync(path, "utf8")) as string[][];
  return rows.map((cells) => Object.fromEntries(header.map((name, index) => [name, cells[index] ?? ""])));
}

/**
 * The x of every row of final_results.csv, sorted, once it has `count` rows: the coordinator
 * acknowledges a report before its background writer appends the row, so allow it a moment.
 */
async function csvXs(dir: string, count: number): Promise<number[]> {
  const path = join(dir, "out", "final_results.csv");
  await until(`${count} row(s) in ${path}`, () => existsSync(path) && readCsv(path).length >= count, 5000);
  await sleep(200); // a row written twice would show up now
  return readCsv(path)
    .map((row) => Number(row.x))
    .sort((p, q) => p - q);
}

function expectCode(result: CliResult, code: number): void {
  expect(result.code, `exited ${result.code} (${result.signal}):\n${result.stderr}`).toBe(code);
}

function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const outboxFiles = (dir: string, name: string): string[] => {
  const outbox = join(dir, `agent-${name}`, "outbox");
  return existsSync(outbox) ? readdirSync(outbox).filter((file) => file.endsWith(".json")) : [];
};

/** Stops the coordinator the way a user does (Ctrl-C) and checks it went. */
async function stopServe(served: Served): Promise<void> {
  served.child.kill("SIGINT");
  expectCode(await served.result, 130);
}

describe("failover: agents and coordinators that die or get cut off", () => {
  it("a SIGKILLed agent's task runs on the idle agent well before its 12 s lease runs out, and its process is gone", async () => {
    const { dir, pids } = project(1, 60);
    const served = await serve(dir);
    const a = agent(served.url, dir, "a", pids);
    await a.waitFor(/task 1 \(attempt 1\) started/);
    await until("attempt 1's pid file", () => existsSync(join(pids, "1")), 5000);
    const firstPid = Number(readFileSync(join(pids, "1"), "utf8"));
    expect(isAlive(firstPid)).toBe(true);
    const b = agent(served.url, dir, "b", pids);
    await b.waitFor(/registered with/);
    await sleep(200); // B's lease request is parked at the coordinator

    a.child.kill("SIGKILL");
    const killedAt = Date.now();
    await a.result;
    await until("attempt 2's pid file", () => readdirSync(pids).length === 2, 6000);
    const secondAfterMs = Date.now() - killedAt;
    expect(secondAfterMs).toBeLessThan(6000);
    await b.waitFor(/task 1 \(attempt 2\) started/, 1000);
    await until(
      `the first sleep (pid ${firstPid}) to die`,
      () => !isAlive(firstPid),
      Math.max(1000, 6000 - secondAfterMs),
    );

    const view = await getTask(served.url, 1);
    expect(view.task.state).toBe("running");
    expect(view.attempts).toHaveLength(2);
    expect(view.attempts[1]?.id).toBe(2);
    const secondPid = Number(readFileSync(join(pids, "2"), "utf8"));
    expect(isAlive(secondPid)).toBe(true);

    b.child.kill("SIGTERM");
    expectCode(await b.result, 130);
    expect(isAlive(secondPid)).toBe(false);
    await stopServe(served);
  });

  it("a partitioned agent keeps its result; it arrives from the outbox after the partition heals", async () => {
    const { dir, pids } = project(2, 1);
    const served = await serve(dir, ["--lease-seconds", "8"]);
    const proxy: TcpProxy = await startTcpProxy(Number(new URL(served.url).port));
    try {
      const worker = agent(proxy.url, dir, "p", pids);
      await worker.waitFor(/task 1 \(attempt 1\) started/);
      proxy.pause();
      const pausedAt = Date.now();
      // The task ends during the partition: its report waits on the agent's disk.
      await worker.waitFor(/task 1 \(attempt 1\) succeeded/, 5000);
      await until("the report in the outbox", () => outboxFiles(dir, "p").length === 1, 2000);
      await sleep(Math.max(0, 2500 - (Date.now() - pausedAt)));
      const during = await getTask(served.url, 1);
      expect(during.task.state).toBe("running"); // the coordinator has not heard (lease 8 s)
      expect(during.attempts).toHaveLength(1);
      expect(during.attempts[0]?.outcome).toBeNull();
      expect(existsSync(join(dir, "out", "final_results.csv"))).toBe(false);

      proxy.resume();
      expectCode(await worker.result, 0);
      expect(outboxFiles(dir, "p")).toEqual([]);
      for (const id of [1, 2]) {
        const view = await getTask(served.url, id);
        expect(view.task.state, `task ${id}`).toBe("succeeded");
        expect(view.attempts, `task ${id}`).toHaveLength(1);
      }
      expect(await csvXs(dir, 2)).toEqual([1, 2]);
      await stopServe(served);
    } finally {
      await proxy.close();
    }
  });

  it("a connection blip shorter than the grace requeues nothing: the task finishes once", async () => {
    const { dir, pids } = project(1, 4);
    const served = await serve(dir);
    const proxy = await startTcpProxy(Number(new URL(served.url).port));
    try {
      const worker = agent(proxy.url, dir, "d", pids);
      await worker.waitFor(/task 1 \(attempt 1\) started/);
      await sleep(300);
      const before = proxy.accepted;
      proxy.dropAll();
      await sleep(2800); // longer than the coordinator's 2 s disconnect grace
      expect(proxy.accepted, "the agent reconnected through the proxy").toBeGreaterThan(before);
      const during = await getTask(served.url, 1);
      expect(during.task.state).toBe("running");
      expect(during.attempts).toHaveLength(1);
      expect(readdirSync(pids)).toEqual(["1"]);

      expectCode(await worker.result, 0);
      const view = await getTask(served.url, 1);
      expect(view.task.state).toBe("succeeded");
      expect(view.attempts).toHaveLength(1);
      expect(view.attempts[0]?.outcome).toBe("succeeded");
      expect(await csvXs(dir, 1)).toEqual([1]);
      expect(served.output()).not.toMatch(/requeued/);
      await stopServe(served);
    } finally {
      await proxy.close();
    }
  });

  it("a coordinator SIGKILLed mid-task and restarted on the same port and state requeues nothing", async () => {
    const { dir, pids } = project(2, 2);
    const port = String(await freePort());
    const first = await serve(dir, ["--port", port]);
    const worker = agent(first.url, dir, "r", pids);
    await worker.waitFor(/task 1 \(attempt 1\) started/);
    first.child.kill("SIGKILL");
    await first.result;
    const second = await serve(dir, ["--port", port]);
    expect(second.url).toBe(first.url);

    expectCode(await worker.result, 0);
    expect(worker.output()).toMatch(/reached the coordinator at .* again|task 2 \(attempt \d+\) started/);
    for (const id of [1, 2]) {
      const view = await getTask(second.url, id);
      expect(view.task.state, `task ${id}`).toBe("succeeded");
      expect(view.attempts, `task ${id}: ${JSON.stringify(view.attempts)}`).toHaveLength(1);
    }
    expect(readdirSync(pids).sort()).toEqual(["1", "2"]);
    expect(await csvXs(dir, 2)).toEqual([1, 2]);
    expect(outboxFiles(dir, "r")).toEqual([]);
    await stopServe(second);
  });
});
