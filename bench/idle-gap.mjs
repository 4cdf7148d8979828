// Idle-slot gap over loopback: one agent with one slot runs 200 no-op tasks back to back; each
// task records when it started and when it ended (ns clock), and the gap is the time from one
// task's end to the next task's start on that slot. Tasks this short make the agent hold the
// next ones ahead, chained in its launcher behind the running one (agent.ts leaseAhead,
// launcher.py): the gap is the launcher seeing the exit and opening the next one's gate.
// Targets: p50 ≤ 5 ms, p99 ≤ 50 ms. Baseline in the same script: the same task run back to
// back by a plain shell loop (the process-spawn floor no scheduler can beat).
import { spawn, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CLI, cleanup, report, tempDir } from "./lib.mjs";

const TASKS = Number(process.env.BENCH_TASKS ?? 200);
const TOKEN = "bench-gap-token-0123456789";
const dir = tempDir("gap");
const record = `echo "s $(date +%s%N)" >> "${dir}/times"; echo "e $(date +%s%N)" >> "${dir}/times"`;
writeFileSync(join(dir, "task.sh"), `${record}\n`);
writeFileSync(
  join(dir, "sweep.yaml"),
  `command: sh task.sh\ngap:\n  output_dir: out\n  retries: 0\n  combinations:\n    - i: [${Array.from({ length: TASKS }, (_, i) => i).join(", ")}]\n`,
);

function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function gapsOf(path) {
  const lines = readFileSync(path, "utf8").trim().split("\n");
  const gaps = [];
  for (let i = 1; i + 1 < lines.length; i += 2) {
    const end = Number(lines[i].split(" ")[1]);
    const nextStart = Number(lines[i + 1].split(" ")[1]);
    gaps.push((nextStart - end) / 1e6);
  }
  return gaps;
}

try {
  const server = spawn(
    process.execPath,
    [CLI, "serve", "sweep.yaml", "--port", "0", "--agent-token", TOKEN, "--exit-when-done"],
    {
      cwd: dir,
      stdio: ["ignore", "pipe", "ignore"],
    },
  );
  const serverExited = new Promise((resolve) => server.once("exit", resolve));
  const url = await new Promise((resolve) =>
    server.stdout.once("data", (chunk) => resolve(chunk.toString().trim())),
  );
  const agent = spawn(
    process.execPath,
    [CLI, "agent", "--server", url, "--token", TOKEN, "--slots", "1", "--state", join(dir, "agent")],
    {
      cwd: dir,
      stdio: "ignore",
    },
  );
  await new Promise((resolve) => agent.once("exit", resolve));
  server.kill("SIGTERM");
  await serverExited;
  const gaps = gapsOf(join(dir, "times"));
  writeFileSync(join(dir, "times"), "");
  spawnSync("/bin/sh", ["-c", `for i in $(seq ${TASKS}); do sh task.sh; done`], { cwd: dir });
  const floor = gapsOf(join(dir, "times"));
  report("idle-gap", {
    tasks: TASKS,
    gap_p50_ms: percentile(gaps, 50),
    gap_p99_ms: percentile(gaps, 99),
    shell_loop_p50_ms: percentile(floor, 50),
    shell_loop_p99_ms: percentile(floor, 99),
    p50_ratio_vs_shell: percentile(gaps, 50) / percentile(floor, 50),
    target: "p50 ≤5ms, p99 ≤50ms",
  });
} finally {
  cleanup(dir);
}
