// Live metrics (issue 13): 128 simulated tasks reporting 10 times a second.
// 1. Coordinator ingest over HTTP: 16 simulated agents of 8 leased tasks each send what their
//    relays would — one POST /agents/:id/points every 250 ms carrying 2–3 points (loss, acc)
//    per task — for BENCH_SECONDS. Prints points/s sustained (offered: 1,280/s) and the
//    coordinator's CPU per 1,000 points. Baseline in the same script: the same agents sending
//    as many POST /heartbeat requests (their attempt ids) at the same cadence; ratio = CPU per
//    points request ÷ CPU per heartbeat.
// 2. The agent's relay (dist/agent/pointRelay.js) reading 128 events files of report lines and
//    handing the points to a sink that takes them at once: CPU per 1,000 relayed reports.
//    Baseline: reading the same files and JSON.parse of every line, nothing else (the floor).
import { appendFileSync, mkdirSync, readFileSync } from "node:fs";
import http from "node:http";
import { join } from "node:path";
import { cleanup, cpuSeconds, report, startServe, stopChild, tempDir } from "./lib.mjs";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const AGENTS = 16;
const SLOTS = 8;
const TASKS = AGENTS * SLOTS;
const TOKEN = "bench-token-0123456789";
const PERIOD_MS = 250;

const dir = tempDir("metrics");
const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 64 });

function post(url, path, body) {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const request = http.request(
      `${url}/api/v1${path}`,
      {
        method: "POST",
        agent: keepAlive,
        headers: {
          authorization: `Bearer ${TOKEN}`,
          "content-type": "application/json",
          "content-length": Buffer.byteLength(payload),
        },
      },
      (response) => {
        let text = "";
        response.setEncoding("utf8");
        response.on("data", (chunk) => {
          text += chunk;
        });
        response.on("end", () =>
          response.statusCode < 300
            ? resolve(JSON.parse(text))
            : reject(new Error(`${path} ${response.statusCode} ${text}`)),
        );
      },
    );
    request.once("error", reject);
    request.end(payload);
  });
}

/** Registers the agents and leases each SLOTS tasks: the attempts points are sent for. */
async function leaseAll(url) {
  const agents = [];
  for (let a = 0; a < AGENTS; a++) {
    const agentId = `bench-${a}`;
    await post(url, "/agents", {
      agentId,
      name: agentId,
      host: "bench",
      slots: SLOTS,
      cpus: 4,
      gpus: [],
      tags: [],
    });
    const capacity = { freeSlots: SLOTS, freeCpus: null, gpus: [], hasGpus: false, tags: [] };
    const answer = await post(url, "/lease", { agentId, capacity, waitMs: 0, max: SLOTS });
    agents.push({ agentId, attemptIds: answer.leases.map((lease) => lease.attemptId) });
  }
  if (agents.some((agent) => agent.attemptIds.length !== SLOTS))
    throw new Error("could not lease every task");
  return agents;
}

/** Runs `send(agent, round)` for every agent every PERIOD_MS for SECONDS; returns {seconds, cpu}. */
async function paced(server, agents, send) {
  const cpuBefore = cpuSeconds(server.pid);
  const started = performance.now();
  const rounds = Math.round((SECONDS * 1000) / PERIOD_MS);
  await Promise.all(
    agents.map(async (agent) => {
      for (let round = 0; round < rounds; round++) {
        const due = started + round * PERIOD_MS;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        await send(agent, round);
      }
    }),
  );
  // The last round starts a period before the end: count whole periods, or the time it took if longer.
  const seconds = Math.max((performance.now() - started) / 1000, (rounds * PERIOD_MS) / 1000);
  return { seconds, cpu: cpuSeconds(server.pid) - cpuBefore };
}

async function ingest() {
  const tasks = Array.from({ length: TASKS }, (_, i) => i).join(", ");
  // Tasks are leased but never run: the simulated agents only report for them.
  mkdirSync(dir, { recursive: true });
  appendFileSync(
    join(dir, "sweep.yaml"),
    `command: "sleep 1000"\nbench:\n  combinations:\n    - i: [${tasks}]\n`,
  );
  const { child: server, url } = await startServe(dir, "sweep.yaml", ["--agent-token", TOKEN]);
  try {
    const agents = await leaseAll(url);
    let requests = 0;
    const beats = await paced(server, agents, async (agent) => {
      await post(url, "/heartbeat", { agentId: agent.agentId, attemptIds: agent.attemptIds });
      requests++;
    });
    let stored = 0;
    let pointRequests = 0;
    const points = await paced(server, agents, async (agent, round) => {
      // 10 reports a second is 2.5 per 250 ms: 2 and 3 in turn.
      const perTask = round % 2 === 0 ? 2 : 3;
      const attempts = agent.attemptIds.map((attemptId) => ({
        attemptId,
        points: Array.from({ length: perTask }, (_, k) => {
          const step = round * 3 + k;
          return { step, time: Date.now() / 1000, metrics: { loss: 1 / (step + 1), acc: step / 1e4 } };
        }),
      }));
      const answer = await post(url, `/agents/${agent.agentId}/points`, { attempts });
      stored += answer.stored;
      pointRequests++;
    });
    const reports = stored / 2; // two metrics a report
    const perPointsRequest = points.cpu / pointRequests;
    const perBeat = beats.cpu / requests;
    report("metrics-ingest", {
      reports_per_s: reports / points.seconds,
      offered_reports_per_s: TASKS * 10,
      coordinator_cpu_ms_per_1000_reports: (points.cpu / reports) * 1e6,
      coordinator_cpu_ms_per_points_request: perPointsRequest * 1000,
      heartbeat_cpu_ms_per_request: perBeat * 1000,
      ratio_points_request_to_heartbeat: perPointsRequest / perBeat,
    });
  } finally {
    await stopChild(server);
  }
}

async function relay() {
  const { PointRelay } = await import(new URL("../dist/agent/pointRelay.js", import.meta.url).href);
  const perTask = Number(process.env.BENCH_REPORTS_PER_TASK ?? 800);
  const files = [];
  for (let t = 0; t < TASKS; t++) {
    const eventsPath = join(dir, `attempt-${t}.events.jsonl`);
    let text = "";
    for (let step = 0; step < perTask; step++)
      text += `${JSON.stringify({ type: "report", step, time: 1733540000 + step, metrics: { loss: 1 / (step + 1), val: { acc: step / 1e4 } } })}\n`;
    appendFileSync(eventsPath, text);
    files.push({ attemptId: t + 1, eventsPath, logPath: join(dir, `attempt-${t}.log`) });
  }
  const floorStart = process.cpuUsage();
  let parsed = 0;
  for (const file of files)
    for (const line of readFileSync(file.eventsPath, "utf8").split("\n"))
      if (line) parsed += JSON.parse(line).step >= 0;
  const floor = process.cpuUsage(floorStart);

  let relayed = 0;
  const relay = new PointRelay({
    send: async (batches) => {
      for (const batch of batches) relayed += batch.points.length;
    },
    intervalMs: 5,
  });
  const start = process.cpuUsage();
  for (const file of files) relay.watch(file.attemptId, file);
  for (const file of files) relay.exited(file.attemptId);
  await relay.drain(60_000);
  const used = process.cpuUsage(start);
  if (relayed !== TASKS * perTask || parsed !== relayed)
    throw new Error(`relayed ${relayed}, parsed ${parsed}`);
  const ms = (usage) => (usage.user + usage.system) / 1000;
  report("metrics-relay", {
    reports: relayed,
    agent_cpu_ms_per_1000_reports: (ms(used) / relayed) * 1000,
    parse_floor_cpu_ms_per_1000_lines: (ms(floor) / parsed) * 1000,
    ratio_to_parse_floor: ms(used) / ms(floor),
  });
}

try {
  await ingest();
  await relay();
} finally {
  cleanup(dir);
}
