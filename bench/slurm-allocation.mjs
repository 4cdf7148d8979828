// Issue 16's figures on a real one-node SLURM (test/helpers/slurmCluster.ts, Debian's slurm-wlm
// and munge): a 200-task sweep of 2-second tasks run twice, by one fixed job array of agents
// (`labsweep slurm --agents N`) and by `serve --slurm` (allocations follow the queue). For each:
// the time from start to the first task running, how many allocations it used, and the fraction
// of allocated slot-time that ran tasks (target for serve --slurm: >= 0.8). Skips (exit 0) where
// SLURM is not installed. Usage: node bench/slurm-allocation.mjs [tasks] [seconds per task]
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";
import { CLI, cleanup, report, tempDir } from "./lib.mjs";

const TASKS = Number(process.argv[2] ?? 200);
const TASK_SECONDS = Number(process.argv[3] ?? 2);
/** The same capacity both ways: at most 8 agents of 2 slots. */
const AGENTS = 8;
const SLOTS = 2;

/** The test harness, transpiled on the fly (it is TypeScript; vitest's hooks are not used here). */
async function loadHarness(dir) {
  const file = join(dir, "slurmCluster.mjs");
  await build({
    entryPoints: [new URL("../test/helpers/slurmCluster.ts", import.meta.url).pathname],
    outfile: file,
    bundle: true,
    platform: "node",
    format: "esm",
    // Its vitest hooks (useSlurmCluster) are not used here: a stub stands in for vitest.
    plugins: [
      {
        name: "no-vitest",
        setup(plugin) {
          plugin.onResolve({ filter: /^vitest$/ }, () => ({ path: "vitest", namespace: "stub" }));
          plugin.onLoad({ filter: /.*/, namespace: "stub" }, () => ({
            contents: "export const beforeAll = () => {}; export const afterAll = () => {};",
          }));
        },
      },
    ],
    logLevel: "error",
  });
  return import(file);
}

function labsweep(args, options) {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"], ...options });
  let out = "";
  child.stdout.on("data", (chunk) => {
    out += chunk;
  });
  child.stderr.on("data", (chunk) => {
    out += chunk;
  });
  const exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, output: () => out, exited };
}

async function until(what, timeoutMs, look) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await look();
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Each task appends "START END" (epoch ms) to ran.txt. */
function writeSweep(dir) {
  const values = Array.from({ length: TASKS }, (_, i) => i).join(", ");
  writeFileSync(
    join(dir, "sweep.yaml"),
    `command: s=$(date +%s%3N); sleep ${TASK_SECONDS}; echo "$s $(date +%s%3N) {i}" >> ran.txt\nwork:\n  output_dir: out\n  combinations:\n    - i: [${values}]\n`,
  );
}

function ran(dir) {
  const path = join(dir, "ran.txt");
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => line.split(" ").map(Number));
}

/** Start and end (epoch s) of each of the cluster's jobs, from slurmctld (finished ones too). */
async function jobTimes(cluster) {
  const text = await cluster.command("scontrol", ["show", "job", "-o"]);
  const jobs = [];
  for (const line of text.split("\n")) {
    const id = /JobId=(\d+)/.exec(line)?.[1];
    const start = /StartTime=(\S+)/.exec(line)?.[1];
    const end = /EndTime=(\S+)/.exec(line)?.[1];
    if (!id || !start || !end || start === "Unknown" || end === "Unknown") continue;
    const started = Date.parse(start);
    const ended = Date.parse(end);
    if (Number.isFinite(started) && Number.isFinite(ended) && ended >= started)
      jobs.push({ id, started, ended });
  }
  return jobs;
}

/** Runs the sweep one way; `start` launches what runs it and returns a stopper. */
async function runWay(cluster, name, start) {
  const dir = tempDir(`slurm-${name}`);
  writeSweep(dir);
  mkdirSync(join(dir, "slurm"));
  const before = new Set((await jobTimes(cluster)).map((job) => job.id));
  const started = Date.now();
  const stop = await start(dir);
  try {
    await until(
      "the first task",
      120_000,
      async () => ran(dir).length > 0 || existsSync(join(dir, "ran.txt")),
    );
    const firstTaskSeconds = (Date.now() - started) / 1000;
    await until("every task", 900_000, async () => ran(dir).length >= TASKS);
    const sweepSeconds = (Date.now() - started) / 1000;
    // Every allocation over: slot-time is counted to each one's end.
    await until("the allocations to end", 300_000, async () => {
      const live = (await cluster.jobs()).filter((row) =>
        ["PENDING", "RUNNING", "CONFIGURING", "COMPLETING"].includes(row.state),
      );
      return live.length === 0;
    });
    const jobs = (await jobTimes(cluster)).filter((job) => !before.has(job.id));
    const slotSeconds = jobs.reduce((sum, job) => sum + ((job.ended - job.started) / 1000) * SLOTS, 0);
    const taskSeconds = ran(dir).reduce((sum, [from, to]) => sum + (to - from) / 1000, 0);
    const lines = ran(dir).map((fields) => fields[2]);
    if (new Set(lines).size !== TASKS) throw new Error(`${name}: ${lines.length} runs of ${TASKS} tasks`);
    return { firstTaskSeconds, sweepSeconds, allocations: jobs.length, slotSeconds, taskSeconds };
  } finally {
    await stop();
    cleanup(dir);
  }
}

async function serve(dir, args, env) {
  const served = labsweep(["serve", "sweep.yaml", "--port", "0", ...args], { cwd: dir, env });
  await until("serve's URL", 60_000, async () => /^http:\/\/127\.0\.0\.1:\d+$/m.test(served.output()));
  const url = /^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(served.output())[1];
  return { served, url };
}

async function stopServe(served) {
  served.child.kill("SIGINT");
  await served.exited;
}

async function main() {
  const work = tempDir("slurm-harness");
  const { slurmBinaries, startSlurmCluster } = await loadHarness(work);
  if (!slurmBinaries()) {
    console.log("slurm-allocation: skipped (SLURM is not installed: apt-get install slurm-wlm munge)");
    return;
  }
  const cluster = await startSlurmCluster({ cpus: AGENTS * SLOTS });
  const env = { ...process.env, ...cluster.env };
  try {
    const fixed = await runWay(cluster, "fixed", async (dir) => {
      const { served, url } = await serve(dir, [], env);
      const token = readFileSync(join(dir, ".labsweep", "tokens.json"), "utf8");
      const agentToken = JSON.parse(token).agent;
      const submit = labsweep(
        [
          "slurm",
          "--server",
          url,
          "--agents",
          String(AGENTS),
          "--slots",
          String(SLOTS),
          "--output",
          join(dir, "slurm"),
        ],
        { cwd: dir, env: { ...env, LABSWEEP_TOKEN: agentToken } },
      );
      if ((await submit.exited) !== 0) throw new Error(`labsweep slurm failed: ${submit.output()}`);
      return () => stopServe(served);
    });
    const elastic = await runWay(cluster, "elastic", async (dir) => {
      const { served } = await serve(
        dir,
        [
          "--slurm",
          "--max-jobs",
          String(AGENTS),
          "--slots",
          String(SLOTS),
          "--idle-exit",
          "3",
          "--alloc-every",
          "1",
          "--output",
          join(dir, "slurm"),
        ],
        env,
      );
      return () => stopServe(served);
    });
    for (const [name, way] of [
      ["fixed job array", fixed],
      ["serve --slurm", elastic],
    ])
      report(`slurm-allocation ${name}`, {
        tasks: TASKS,
        task_s: TASK_SECONDS,
        first_task_s: way.firstTaskSeconds,
        sweep_s: way.sweepSeconds,
        allocations: way.allocations,
        slot_time_used: way.taskSeconds / way.slotSeconds,
      });
    report("slurm-allocation ratios (serve --slurm / fixed array)", {
      first_task: elastic.firstTaskSeconds / fixed.firstTaskSeconds,
      sweep_time: elastic.sweepSeconds / fixed.sweepSeconds,
      slot_time_used: elastic.taskSeconds / elastic.slotSeconds / (fixed.taskSeconds / fixed.slotSeconds),
      target_slot_time_used_ge_0_8: elastic.taskSeconds / elastic.slotSeconds >= 0.8 ? "met" : "MISSED",
    });
  } finally {
    await cluster.stop();
    cleanup(work);
  }
}

await main();
