// Replicated coordinators: completions per second with 32 simulated agents × 4 slots (lease and
// complete over HTTP, no process; simulated-agents.mjs), for one coordinator on SQLite, one on
// PostgreSQL, and two replicas on one PostgreSQL database with the agents split between them.
// Targets: PostgreSQL single ≥ 2,000/s; two replicas ≥ 1.5× one replica. The baseline in the same
// script is the SQLite coordinator. PostgreSQL runs from this machine's binaries (initdb/pg_ctl,
// as the postgres user when root) in a temp dir, with synchronous_commit=off: a commit survives
// the server process's crash, as SQLite's WAL with synchronous=NORMAL does. Also printed, per
// completion: the CPU of the coordinators, of PostgreSQL's processes and of the simulated agents —
// on a two-core machine all three share the cores, and replicas can only scale if they are free.
import { execFileSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
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

function postgresBin() {
  const dirs = [process.env.LABSWEEP_PG_BIN, ...(process.env.PATH ?? "").split(":"), "/usr/local/bin"];
  if (existsSync("/usr/lib/postgresql"))
    for (const version of readdirSync("/usr/lib/postgresql")) dirs.push(`/usr/lib/postgresql/${version}/bin`);
  const found = dirs.find((dir) => dir && existsSync(join(dir, "initdb")) && existsSync(join(dir, "pg_ctl")));
  if (!found) throw new Error("PostgreSQL's initdb/pg_ctl not found (apt-get install postgresql)");
  return found;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function startPostgres() {
  const bin = postgresBin();
  const root = mkdtempSync(join(tmpdir(), "labsweep-bench-pg-"));
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const [, , uid, gid] = readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .find((line) => line.startsWith("postgres:"))
      .split(":");
    chownSync(root, Number(uid), Number(gid));
  }
  const as = (file, args) =>
    asRoot
      ? execFileSync(
          "setpriv",
          ["--reuid=postgres", "--regid=postgres", "--init-groups", join(bin, file), ...args],
          { stdio: "ignore" },
        )
      : execFileSync(join(bin, file), args, { stdio: "ignore" });
  const data = join(root, "data");
  as("initdb", ["-D", data, "-U", "labsweep", "--auth=trust", "-E", "UTF8", "--no-sync"]);
  const port = await freePort();
  const settings = [
    "listen_addresses=127.0.0.1",
    `port=${port}`,
    `unix_socket_directories=${root}`,
    "synchronous_commit=off",
    "max_connections=200",
    "shared_buffers=256MB",
  ];
  as("pg_ctl", [
    "-D",
    data,
    "-l",
    join(root, "log"),
    "-w",
    "-o",
    settings.map((s) => `-c ${s}`).join(" "),
    "start",
  ]);
  const admin = `postgres://labsweep@127.0.0.1:${port}/postgres`;
  const postmaster = Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]);
  let databases = 0;
  return {
    /** CPU seconds so far of the server and each of its processes (backends, WAL writer…), by pid. */
    cpu() {
      const seconds = new Map();
      for (const pid of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
        try {
          const parent = Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")[1]);
          if (Number(pid) === postmaster || parent === postmaster) seconds.set(pid, cpuSeconds(Number(pid)));
        } catch {
          // The process ended between the listing and the read.
        }
      }
      return seconds;
    },
    async createDatabase() {
      const name = `bench${++databases}`;
      const client = new pg.Client({ connectionString: admin });
      await client.connect();
      await client.query(`CREATE DATABASE ${name}`);
      await client.end();
      return `postgres://labsweep@127.0.0.1:${port}/${name}`;
    },
    stop() {
      as("pg_ctl", ["-D", data, "-m", "fast", "-w", "stop"]);
      cleanup(root);
    },
  };
}

/** Serves a fresh copy of the sweep from `replicas` coordinators on `store` and runs the agents. */
async function measure(label, replicas, store) {
  const dir = tempDir("replicas");
  writeNoopSweep(dir, TASKS);
  const servers = [];
  try {
    for (let i = 0; i < replicas; i++) {
      const args = ["--agent-token", TOKEN, "--state", join(dir, `state-${i}`)];
      // Replicas start one after the other: the first creates the ledger, the others find it.
      servers.push(await startServe(dir, "sweep.yaml", store ? [...args, "--store", store] : args));
    }
    const before = servers.map(({ child }) => cpuSeconds(child.pid));
    const postgresBefore = store ? postgres.cpu() : new Map();
    const work = await runSimulatedAgents(
      "work",
      servers.map(({ url }) => url),
      AGENTS,
      SLOTS,
      TOKEN,
    );
    const cpu = servers.reduce((sum, { child }, i) => sum + cpuSeconds(child.pid) - before[i], 0);
    // The box's CPU split: on two cores PostgreSQL, the agents and the coordinators share it.
    let postgresCpu = 0;
    if (store)
      for (const [pid, seconds] of postgres.cpu()) postgresCpu += seconds - (postgresBefore.get(pid) ?? 0);
    if (work.done !== TASKS) throw new Error(`${label}: ${work.done} of ${TASKS} tasks completed`);
    const perCompletion = (seconds) => (seconds / work.done) * 1000;
    return {
      perSecond: work.done / work.seconds,
      cpuMsPerCompletion: perCompletion(cpu),
      postgresCpuMsPerCompletion: perCompletion(postgresCpu),
      agentsCpuMsPerCompletion: perCompletion(work.cpuSeconds),
    };
  } finally {
    for (const { child } of servers) await stopChild(child);
    cleanup(dir);
  }
}

const postgres = await startPostgres();
try {
  // BENCH_ONLY=pg1 measures one PostgreSQL coordinator alone (for profiling).
  if (process.env.BENCH_ONLY === "pg1") {
    const only = await measure("postgres×1", 1, await postgres.createDatabase());
    report("replicas", {
      postgres_1_per_s: only.perSecond,
      cpu_ms: only.cpuMsPerCompletion,
      postgres_cpu_ms: only.postgresCpuMsPerCompletion,
      agents_cpu_ms: only.agentsCpuMsPerCompletion,
    });
  } else {
    const sqlite = await measure("sqlite", 1, null);
    const single = await measure("postgres×1", 1, await postgres.createDatabase());
    const pair = await measure("postgres×2", 2, await postgres.createDatabase());
    report("replicas", {
      agents: AGENTS,
      slots: SLOTS,
      tasks: TASKS,
      sqlite_per_s: sqlite.perSecond,
      postgres_1_per_s: single.perSecond,
      postgres_2_per_s: pair.perSecond,
      postgres_1_vs_sqlite: single.perSecond / sqlite.perSecond,
      two_replicas_vs_one: pair.perSecond / single.perSecond,
      coordinator_cpu_ms_per_completion_sqlite: sqlite.cpuMsPerCompletion,
      coordinator_cpu_ms_per_completion_pg1: single.cpuMsPerCompletion,
      coordinator_cpu_ms_per_completion_pg2: pair.cpuMsPerCompletion,
      postgres_cpu_ms_per_completion_pg1: single.postgresCpuMsPerCompletion,
      postgres_cpu_ms_per_completion_pg2: pair.postgresCpuMsPerCompletion,
      agents_cpu_ms_per_completion_pg1: single.agentsCpuMsPerCompletion,
      agents_cpu_ms_per_completion_pg2: pair.agentsCpuMsPerCompletion,
      target: "postgres single ≥2000/s; 2 replicas ≥1.5× one",
    });
  }
} finally {
  postgres.stop();
}
