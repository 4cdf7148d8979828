// Simulated agents for the throughput benchmarks: AGENTS agents × SLOTS slots that lease and
// complete tasks over HTTP without running a process, speaking the protocol the real agent does
// (src/agent/httpPort.ts): one POST /lease per round trip carries the finish reports of the tasks
// just completed and asks for as many tasks as there are free slots. Agents are spread round-robin
// over the given coordinator URLs (replicas). Mode "health" does bare GET /health round trips for
// 3 s instead: the HTTP floor. Prints {done, seconds, cpuSeconds} as JSON.
//   node bench/simulated-agents.mjs MODE URL[,URL…] AGENTS SLOTS TOKEN
// node:http with keep-alive: on two cores the simulated agents' own CPU competes with the
// coordinators', and fetch costs several times as much.
import http from "node:http";

const [mode, urlList, agentsText, slotsText, token] = process.argv.slice(2);
const urls = urlList.split(",");
const AGENTS = Number(agentsText);
const SLOTS = Number(slotsText);
const auth = { authorization: `Bearer ${token}`, "content-type": "application/json" };
const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 256 });

function call(url, method, path, body) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers = payload === undefined ? {} : { ...auth, "content-length": Buffer.byteLength(payload) };
    const request = http.request(
      `${url}/api/v1${path}`,
      { method, agent: keepAlive, headers },
      (response) => {
        let text = "";
        response.setEncoding("utf8");
        response.on("data", (chunk) => {
          text += chunk;
        });
        response.on("end", () =>
          response.statusCode < 300
            ? resolve(text)
            : reject(new Error(`${path} ${response.statusCode} ${text}`)),
        );
      },
    );
    request.once("error", reject);
    request.end(payload);
  });
}
const post = async (url, path, body) => JSON.parse(await call(url, "POST", path, body));

let done = 0;
const started = performance.now();

async function health(url) {
  const until = started + 3000;
  while (performance.now() < until) {
    await call(url, "GET", "/health");
    done++;
  }
}

async function agent(url, agentId) {
  await post(url, "/agents", {
    agentId,
    name: agentId,
    host: "bench",
    slots: SLOTS,
    cpus: 4,
    gpus: [],
    tags: [],
  });
  let held = [];
  for (;;) {
    const reports = held.map((attemptId) => ({
      attemptId,
      outcome: { kind: "succeeded", metrics: {}, wallSeconds: 0 },
    }));
    const capacity = { freeSlots: SLOTS, freeCpus: null, gpus: [], hasGpus: false, tags: [] };
    const answer = await post(url, "/lease", { agentId, capacity, waitMs: 200, max: SLOTS, reports });
    for (const verdict of answer.reports) {
      if (!verdict.accepted) throw new Error(`report not accepted: ${JSON.stringify(verdict)}`);
      done++;
    }
    held = answer.leases.map((lease) => lease.attemptId);
    if (answer.done && held.length === 0) return;
  }
}

const work = [];
for (let a = 0; a < AGENTS; a++) {
  const url = urls[a % urls.length];
  if (mode === "health") for (let s = 0; s < SLOTS; s++) work.push(health(url));
  else work.push(agent(url, `bench-${a}`));
}
await Promise.all(work);
// The agents' own CPU, for the benchmarks' CPU split (on two cores they compete with the servers).
const { user, system } = process.cpuUsage();
console.log(
  JSON.stringify({ done, seconds: (performance.now() - started) / 1000, cpuSeconds: (user + system) / 1e6 }),
);
