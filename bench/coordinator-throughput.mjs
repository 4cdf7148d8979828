// Coordinator throughput: 32 simulated agents × 4 slots lease and complete no-op tasks over
// HTTP (no process is run), against one `labsweep serve` on SQLite. Target: ≥ 2,000
// completions/s. Each simulated agent speaks the protocol the real one does (src/agent/httpPort.ts):
// one POST /lease per round trip carries the finish reports of the tasks it just completed and
// asks for as many tasks as it has free slots. Baseline in the same script: the same clients
// doing bare GET /health round trips — the HTTP floor of this machine.
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CLI, cleanup, report, tempDir } from "./lib.mjs";

const TASKS = Number(process.env.BENCH_TASKS ?? 20_000);
const AGENTS = Number(process.env.BENCH_AGENTS ?? 32);
const SLOTS = Number(process.env.BENCH_SLOTS ?? 4);
const dir = tempDir("throughput");
writeFileSync(
  join(dir, "sweep.yaml"),
  `command: "true"\nnoop:\n  output_dir: out\n  combinations:\n    - i: [${Array.from({ length: TASKS }, (_, i) => i).join(", ")}]\n`,
);

const server = spawn(
  process.execPath,
  [
    ...(process.env.BENCH_PROFILE ? ["--cpu-prof", "--cpu-prof-dir", process.env.BENCH_PROFILE] : []),
    CLI,
    "serve",
    "sweep.yaml",
    "--port",
    "0",
    "--agent-token",
    "bench-token-0123456789",
  ],
  {
    cwd: dir,
    stdio: ["ignore", "pipe", "inherit"],
  },
);
const url = await new Promise((resolve, reject) => {
  server.stdout.once("data", (chunk) => resolve(chunk.toString().trim()));
  server.once("exit", (code) => reject(new Error(`serve exited ${code}`)));
});

// The simulated agents run in their own process, as real agents would.
const clients = `
const url = ${JSON.stringify(url)}; const auth = { authorization: "Bearer bench-token-0123456789", "content-type": "application/json" };
const mode = process.argv[1]; const AGENTS = ${AGENTS}, SLOTS = ${SLOTS};
// node:http with keep-alive, for both the baseline and the work: on two cores the simulated
// agents' own CPU competes with the coordinator's, and fetch costs several times as much.
import http from "node:http";
const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 256 });
const call = (method, path, body) => new Promise((resolve, reject) => {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const request = http.request(url + "/api/v1" + path, { method, agent: keepAlive, headers: payload === undefined ? {} : { ...auth, "content-length": Buffer.byteLength(payload) } }, (response) => {
    let text = ""; response.setEncoding("utf8"); response.on("data", (chunk) => (text += chunk));
    response.on("end", () => response.statusCode < 300 ? resolve(text) : reject(new Error(path + " " + response.statusCode + " " + text)));
  });
  request.once("error", reject); request.end(payload);
});
const post = async (path, body) => JSON.parse(await call("POST", path, body));
let done = 0; const started = performance.now();
async function health() { const until = started + 3000; while (performance.now() < until) { await call("GET", "/health"); done++; } }
async function agent(agentId) {
  let held = [];
  for (;;) {
    const reports = held.map((attemptId) => ({ attemptId, outcome: { kind: "succeeded", metrics: {}, wallSeconds: 0 } }));
    const capacity = { freeSlots: SLOTS, freeCpus: null, gpus: [], hasGpus: false, tags: [] };
    const answer = await post("/lease", { agentId, capacity, waitMs: 200, max: SLOTS, reports });
    for (const verdict of answer.reports) if (verdict.accepted) done++; else throw new Error("report not accepted: " + JSON.stringify(verdict));
    held = answer.leases.map((lease) => lease.attemptId);
    if (answer.done && held.length === 0) return;
  }
}
const agents = [];
for (let a = 0; a < AGENTS; a++) {
  const agentId = "bench-" + a;
  if (mode === "health") { for (let s = 0; s < SLOTS; s++) agents.push(health()); continue; }
  await post("/agents", { agentId, name: agentId, host: "bench", slots: SLOTS, cpus: 4, gpus: [], tags: [] });
  agents.push(agent(agentId));
}
await Promise.all(agents);
console.log(JSON.stringify({ done, seconds: (performance.now() - started) / 1000 }));
`;
function runClients(mode) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--input-type=module", "-e", clients, mode], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (chunk) => (out += chunk));
    child.once("exit", (code) =>
      code === 0
        ? resolve(JSON.parse(out.trim().split("\n").at(-1)))
        : reject(new Error(`clients exited ${code}`)),
    );
  });
}

/** CPU seconds (user + system) the coordinator process has used so far. */
function serverCpuSeconds() {
  const fields = readFileSync(`/proc/${server.pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (100/s)
}

try {
  const health = await runClients("health");
  const cpuBefore = serverCpuSeconds();
  const work = await runClients("work");
  const cpuPerCompletionMs = ((serverCpuSeconds() - cpuBefore) / work.done) * 1000;
  const healthPerSecond = health.done / health.seconds;
  const completionsPerSecond = work.done / work.seconds;
  report("coordinator-throughput", {
    agents: AGENTS,
    slots: SLOTS,
    completed: work.done,
    completions_per_s: completionsPerSecond,
    health_requests_per_s: healthPerSecond,
    // Less noisy than the rate on a shared machine: the coordinator's own CPU per completion.
    server_cpu_ms_per_completion: cpuPerCompletionMs,
    ratio_vs_http_floor: completionsPerSecond / healthPerSecond,
    target: "≥2000/s",
  });
} finally {
  server.kill("SIGTERM");
  await new Promise((resolve) => server.once("exit", resolve));
  cleanup(dir);
}
