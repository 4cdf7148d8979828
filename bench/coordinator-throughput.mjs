// Coordinator throughput: 32 simulated agents × 4 slots lease and complete no-op tasks over
// HTTP (no process is run), against one `labsweep serve` on SQLite. Target (issue 14): ≥ 5,000
// completions/s. Each simulated agent speaks the protocol the real one does (simulated-agents.mjs):
// one POST /lease per round trip carries the finish reports of the tasks it just completed and
// asks for as many tasks as it has free slots. Baseline in the same script: the same clients
// doing bare GET /health round trips — the HTTP floor of this machine. Also printed: the
// coordinator's own CPU per completion, which machine noise moves less than the rate.
import {
  cleanup,
  cpuSeconds,
  report,
  runSimulatedAgents,
  startServe,
  stopChild,
  tempDir,
  writeNoopSweep,
} from "./lib.mjs";

const TASKS = Number(process.env.BENCH_TASKS ?? 20_000);
const AGENTS = Number(process.env.BENCH_AGENTS ?? 32);
const SLOTS = Number(process.env.BENCH_SLOTS ?? 4);
const TOKEN = "bench-token-0123456789";
const dir = tempDir("throughput");
writeNoopSweep(dir, TASKS);

const profile = process.env.BENCH_PROFILE;
const { child: server, url } = await startServe(dir, "sweep.yaml", ["--agent-token", TOKEN]);
try {
  const health = await runSimulatedAgents("health", [url], AGENTS, SLOTS, TOKEN);
  const cpuBefore = cpuSeconds(server.pid);
  const work = await runSimulatedAgents("work", [url], AGENTS, SLOTS, TOKEN);
  const healthPerSecond = health.done / health.seconds;
  const completionsPerSecond = work.done / work.seconds;
  report("coordinator-throughput", {
    agents: AGENTS,
    slots: SLOTS,
    completed: work.done,
    completions_per_s: completionsPerSecond,
    health_requests_per_s: healthPerSecond,
    server_cpu_ms_per_completion: ((cpuSeconds(server.pid) - cpuBefore) / work.done) * 1000,
    ratio_vs_http_floor: completionsPerSecond / healthPerSecond,
    target: "≥5000/s",
    ...(profile ? { profile } : {}),
  });
} finally {
  await stopChild(server);
  cleanup(dir);
}
