import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { describe, expect, it } from "vitest";
import { Database } from "../src/ledger/sqliteDriver.js";
import { type CliResult, runCli, startCli, tempDir, type Watched, watch, writeFile } from "./helpers/cli.js";
import { fakeGpuEnv } from "./helpers/fakeGpus.js";

/**
 * A task that reports like the Python client does (append-only JSON lines, flushed): five points,
 * then it waits for the test's `go-<x>` file, then hostile lines, a few more points and a last
 * line without its "\n".
 */
const TASK_PY = `import json, os, sys, time
x = int(sys.argv[1])
ev = os.environ.get("LABSWEEP_EVENTS_FILE") or os.environ["LABSWEEP_RESULT_FILE"][:-len(".result.json")] + ".events.jsonl"
f = open(ev, "a")
def line(obj):
    f.write(json.dumps(obj) + "\\n"); f.flush()
def report(step, **metrics):
    line({"type": "report", "step": step, "time": time.time(), "metrics": metrics})
for step in range(5):
    report(step, loss=x / (step + 1), val={"acc": step / 10})
print(f"task {x} reported", flush=True)
while not os.path.exists(os.path.join(os.environ["GO_DIR"], f"go-{x}")):
    time.sleep(0.05)
f.write("not json\\n")
line({"type": "report", "step": -1, "metrics": {"loss": 1}})
f.write('{"type": "report", "step": 5, "metrics": {"loss": NaN, "ok": 1}}\\n')
line({"type": "report", "step": 6, "metrics": {"x" * 300: 1, "loss": 0.25}})
line({"type": "report", "step": 7, "metrics": {"loss": 0.2}, "pad": "z" * 70000})
line({"type": "checkpoint", "path": "elsewhere"})
report(8, loss=0.125)
f.write('{"type": "report", "step": 9, "metrics": {"loss": 0.0625}}')
f.flush()
json.dump({"loss": 0.0625}, open(os.environ["LABSWEEP_RESULT_FILE"], "w"))
`;

/** A task that reports steps 0–4, then 5–9 once `go-a` exists, then 10–14 once `go-b` exists. */
const STAGED_PY = `import json, os, time
ev = os.environ.get("LABSWEEP_EVENTS_FILE") or os.environ["LABSWEEP_RESULT_FILE"][:-len(".result.json")] + ".events.jsonl"
f = open(ev, "a")
def stage(first):
    for step in range(first, first + 5):
        f.write(json.dumps({"type": "report", "step": step, "time": time.time(), "metrics": {"loss": step / 100}}) + "\\n")
        f.flush()
def wait(name):
    while not os.path.exists(os.path.join(os.environ["GO_DIR"], name)):
        time.sleep(0.05)
stage(0); wait("go-a"); stage(5); wait("go-b"); stage(10)
`;

function project(count: number): { dir: string; goDir: string } {
  const dir = tempDir();
  writeFile(dir, "task.py", TASK_PY);
  const xs = Array.from({ length: count }, (_, i) => i + 1).join(", ");
  writeFile(
    dir,
    "sweep.yaml",
    `command: python3 task.py {x}\ntrain:\n  output_dir: out\n  combinations:\n    - x: [${xs}]\n    - step: [3]\n`,
  );
  return { dir, goDir: tempDir() };
}

interface Series {
  steps: number[];
  values: number[];
  attempts: number[];
}

async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** Polls `url` until `ready` holds of its JSON (the relay sends every 250 ms). */
async function until<T>(read: () => Promise<T>, ready: (value: T) => boolean, what: string): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const value = await read();
    if (ready(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function expectCode(result: CliResult, code: number): void {
  expect(result.code, `exited ${result.code}:\n${result.stderr}`).toBe(code);
}

/** The final series every task x of TASK_PY leaves: bad lines, values and names dropped. */
function expectedSeries(x: number): Record<string, Series> {
  return {
    loss: {
      steps: [0, 1, 2, 3, 4, 6, 8, 9],
      values: [x, x / 2, x / 3, x / 4, x / 5, 0.25, 0.125, 0.0625],
      attempts: [1, 1, 1, 1, 1, 1, 1, 1],
    },
    ok: { steps: [5], values: [1], attempts: [1] },
    "val.acc": { steps: [0, 1, 2, 3, 4], values: [0, 0.1, 0.2, 0.3, 0.4], attempts: [1, 1, 1, 1, 1] },
  };
}

describe("live metrics", () => {
  it("labsweep run: a running task's points are served while it runs; bad lines are dropped and told once", async () => {
    const { dir, goDir } = project(1);
    const run: Watched = watch(
      startCli(["run", join(dir, "sweep.yaml"), "--port", "0"], { cwd: dir, env: { GO_DIR: goDir } }),
    );
    await run.waitFor(/dashboard at http:\/\/127\.0\.0\.1:\d+\//);
    const base = `${(/dashboard at (http:\/\/127\.0\.0\.1:\d+)\//.exec(run.output()) as RegExpExecArray)[1]}/api/v1`;
    // Live: the task is still waiting for its go file, and its five points are there.
    const live = await until(
      () => getJson(`${base}/tasks/1/metrics`),
      (answer) => ((answer.body.series as Record<string, Series>)?.loss?.steps.length ?? 0) === 5,
      "five live points",
    );
    expect(existsSync(join(goDir, "go-1"))).toBe(false);
    expect(live.body).toEqual({
      taskId: 1,
      series: {
        loss: { steps: [0, 1, 2, 3, 4], values: [1, 0.5, 1 / 3, 0.25, 0.2], attempts: [1, 1, 1, 1, 1] },
        "val.acc": expectedSeries(1)["val.acc"],
      },
    });
    expect((await getJson(`${base}/metrics`)).body).toEqual({ names: ["loss", "val.acc"] });
    expect((await getJson(`${base}/metrics?phase=train`)).body).toEqual({ names: ["loss", "val.acc"] });
    const across = await getJson(`${base}/metrics/val.acc/series?phase=train`);
    expect(across.body).toEqual({
      name: "val.acc",
      truncated: false,
      tasks: [
        { taskId: 1, params: { x: 1, step: 3 }, steps: [0, 1, 2, 3, 4], values: [0, 0.1, 0.2, 0.3, 0.4] },
      ],
    });
    // The dashboard's event stream names the task that got points, so its page can redraw.
    expect(await nextPointsEvent(`${base}/dashboard/events`)).toEqual({ taskIds: [1] });
    // Hostile reads: a clear 4xx each, never a 500.
    expect((await getJson(`${base}/tasks/abc/metrics`)).status).toBe(400);
    expect((await getJson(`${base}/tasks/99999/metrics`)).status).toBe(404);
    expect((await getJson(`${base}/metrics?phase=nope`)).status).toBe(400);
    expect((await getJson(`${base}/metrics/${"n".repeat(201)}/series`)).status).toBe(400);
    expect((await getJson(`${base}/metrics/${"n".repeat(200)}/series`)).status).toBe(404);
    const missing = await getJson(`${base}/metrics/${encodeURIComponent("no/such'metric")}/series`);
    expect(missing.status).toBe(404);
    expect(missing.body.error).toContain("no/such'metric");
    // `run` offers no agent API: points come in-process.
    const post = await fetch(`${base}/agents/x/points`, { method: "POST", body: "{}" });
    expect(post.status).toBe(404);

    writeFileSync(join(goDir, "go-1"), "");
    const done = await run.result;
    expectCode(done, 0);
    const log = readFileSync(join(dir, ".labsweep", "tasks", "1", "attempt-1.log"), "utf8");
    expect(log.match(/dropped line 6 of LABSWEEP_EVENTS_FILE \(not JSON\)/g)).toHaveLength(1);
    expect(log).toContain("labsweep: 3 lines of LABSWEEP_EVENTS_FILE were dropped in all");

    // export --metrics: CSV (params as columns; `step` clashes with a column: param_step) and JSONL.
    const csv = await runCli(["export", join(dir, "sweep.yaml"), "--metrics"], { cwd: dir });
    expectCode(csv, 0);
    const [header, ...rows] = parse(csv.stdout) as string[][];
    expect(header).toEqual(["task_id", "x", "param_step", "metric", "step", "value", "attempt", "time"]);
    const series = expectedSeries(1);
    const expected = Object.entries(series).flatMap(([metric, s]) =>
      s.steps.map((step, i) => ["1", "1", "3", metric, String(step), String(s.values[i]), "1"]),
    );
    expect(rows.map((row) => row.slice(0, 7))).toEqual(expected);
    for (const row of rows) expect(Number(row[7])).toBeGreaterThan(1_600_000_000);
    const jsonl = await runCli(["export", join(dir, "sweep.yaml"), "--metrics", "--format", "jsonl"], {
      cwd: dir,
    });
    expectCode(jsonl, 0);
    const points = jsonl.stdout
      .trim()
      .split("\n")
      .map((text) => JSON.parse(text) as Record<string, unknown>);
    expect(points).toHaveLength(expected.length);
    expect(points[0]).toMatchObject({
      task_id: 1,
      params: { x: 1, step: 3 },
      metric: "loss",
      step: 0,
      value: 1,
      attempt: 1,
    });
  });

  it("serve + agent: points written while the coordinator is dead (SIGKILL) arrive once it is back, each exactly once", async () => {
    const dir = tempDir();
    const goDir = tempDir();
    writeFile(dir, "task.py", STAGED_PY);
    writeFile(dir, "sweep.yaml", "command: python3 task.py\ntrain:\n  combinations:\n    - seed: [1]\n");
    const port = String(await freePort());
    const env = { ...fakeGpuEnv([]), LABSWEEP_GPU_LOCK_DIR: tempDir(), GO_DIR: goDir };
    const first = await serve(dir, port);
    const base = `${first.url}/api/v1`;
    const worker = watch(
      startCli(
        ["agent", "--server", first.url, `--token=${first.token}`, "--state", join(tempDir(), "agent")],
        { env },
      ),
    );
    const losses = async () =>
      ((await getJson(`${base}/tasks/1/metrics`)).body.series as Record<string, Series> | undefined)?.loss
        ?.steps ?? [];
    await until(losses, (steps) => steps.length === 5, "the first five points");
    await hostilePosts(base, first.token);

    first.child.kill("SIGKILL");
    await first.result;
    writeFileSync(join(goDir, "go-a"), "");
    await worker.waitFor(/could not relay live metrics \(kept in the tasks' events files/);
    const second = await serve(dir, port);
    await until(losses, (steps) => steps.length === 10, "the points written while the coordinator was away");
    writeFileSync(join(goDir, "go-b"), "");
    const [served, agentExit] = await Promise.all([second.result, worker.result]);
    expectCode(served, 0);
    expectCode(agentExit, 0);

    const db = new Database(join(dir, ".labsweep", "ledger.sqlite"), { readonly: true });
    try {
      const rows = db.prepare("SELECT name, step, value, attempt FROM metric_points ORDER BY step").all();
      expect(rows).toEqual(
        Array.from({ length: 15 }, (_, step) => ({ name: "loss", step, value: step / 100, attempt: 1 })),
      );
      expect(db.prepare("SELECT name, points, last_step FROM metric_series").all()).toEqual([
        { name: "loss", points: 15, last_step: 14 },
      ]);
    } finally {
      db.close();
    }
  });
});

/** The data of the first `points` event on the dashboard's stream. */
async function nextPointsEvent(url: string): Promise<unknown> {
  const abort = new AbortController();
  const response = await fetch(url, { signal: abort.signal });
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = "";
  try {
    for (;;) {
      const match = /event: points\ndata: (.*)\n\n/.exec(text);
      if (match) return JSON.parse(match[1] as string);
      const { value, done } = await reader.read();
      if (done) throw new Error(`the stream ended without a points event:\n${text}`);
      text += decoder.decode(value, { stream: true });
    }
  } finally {
    abort.abort();
  }
}

/** Bodies an attacker (or a broken agent) might send: each refused or dropped, none a 500. */
async function hostilePosts(base: string, token: string): Promise<void> {
  const post = (body: string, auth = token) =>
    fetch(`${base}/agents/someone/points`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${auth}` },
      body,
    });
  expect((await post("{}", "wrong-token-0123456789")).status).toBe(401);
  expect((await post("not json")).status).toBe(400);
  expect(
    (
      await post(
        JSON.stringify({ attempts: [{ attemptId: 1, points: [{ step: 1, time: 1, metrics: { a: "x" } }] }] }),
      )
    ).status,
  ).toBe(400);
  expect(
    (
      await post(
        JSON.stringify({ attempts: [{ attemptId: 1, points: [{ step: -1, time: 1, metrics: {} }] }] }),
      )
    ).status,
  ).toBe(400);
  const huge = JSON.stringify({
    attempts: [{ attemptId: 1, points: [{ step: 1, time: 1, metrics: { ["x".repeat(2_000_000)]: 1 } }] }],
  });
  expect((await post(huge)).status).toBe(413);
  // Another agent's attempt (attempt 1 is the real agent's), and an unknown one: dropped.
  const foreign = await post(
    JSON.stringify({
      attempts: [
        { attemptId: 1, points: [{ step: 99, time: 1, metrics: { loss: 9 } }] },
        { attemptId: 77, points: [{ step: 1, time: 1, metrics: { loss: 1 } }] },
      ],
    }),
  );
  expect(foreign.status).toBe(200);
  expect(await foreign.json()).toEqual({ stored: 0, dropped: 2 });
}

interface Served extends Watched {
  url: string;
  token: string;
}

async function serve(dir: string, port: string): Promise<Served> {
  const watched = watch(
    startCli(["serve", join(dir, "sweep.yaml"), "--exit-when-done", "--trust-loopback", "--port", port], {
      cwd: dir,
    }),
  );
  await watched.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
  const url = (/^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(watched.output()) as RegExpExecArray)[1] as string;
  const token = (await runCli(["token", "--state", join(dir, ".labsweep")])).stdout.trim();
  return { ...watched, url, token };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}
