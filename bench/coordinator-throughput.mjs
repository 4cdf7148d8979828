// Coordinator throughput: 32 simulated agents × 4 slots lease and complete no-op tasks over
// HTTP (no process is run), against one `labsweep serve` on SQLite. Target: ≥ 2,000
// completions/s. Baseline in the same script: the same clients doing bare GET /health round
// trips — the HTTP floor; a completion costs two requests (lease + finish).
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
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
const post = async (path, body) => { const r = await fetch(url + "/api/v1" + path, { method: "POST", headers: auth, body: JSON.stringify(body) }); if (!r.ok) throw new Error(path + " " + r.status + " " + await r.text()); return r.json(); };
let done = 0; const started = performance.now();
const capacity = { freeSlots: 1, freeCpus: null, gpus: [], hasGpus: false };
async function slot(agentId) {
  if (mode === "health") { const until = started + 3000; while (performance.now() < until) { const r = await fetch(url + "/api/v1/health"); await r.text(); done++; } return; }
  for (;;) {
    const { lease, done: finished } = await post("/lease", { agentId, capacity, waitMs: 200 });
    if (finished) return;
    if (!lease) continue;
    await post("/attempts/" + lease.attemptId + "/finish", { agentId, outcome: { kind: "succeeded", metrics: {}, wallSeconds: 0 } });
    done++;
  }
}
const agents = [];
for (let a = 0; a < AGENTS; a++) {
  const agentId = "bench-" + a;
  if (mode !== "health") await post("/agents", { agentId, name: agentId, host: "bench", slots: SLOTS, cpus: 4, gpus: [], tags: [] });
  for (let s = 0; s < SLOTS; s++) agents.push(slot(agentId));
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

try {
  const health = await runClients("health");
  const work = await runClients("work");
  const healthPerSecond = health.done / health.seconds;
  const completionsPerSecond = work.done / work.seconds;
  report("coordinator-throughput", {
    agents: AGENTS,
    slots: SLOTS,
    completed: work.done,
    completions_per_s: completionsPerSecond,
    health_requests_per_s: healthPerSecond,
    ratio_vs_http_floor: completionsPerSecond / (healthPerSecond / 2),
    target: "≥2000/s",
  });
} finally {
  server.kill("SIGTERM");
  await new Promise((resolve) => server.once("exit", resolve));
  cleanup(dir);
}
