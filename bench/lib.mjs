// Shared helpers for benchmarks: timing, child-process runs with peak RSS, temp dirs.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";

// BENCH_CLI runs another build (bench/before-after.mjs compares two commits in one script).
export const CLI = process.env.BENCH_CLI ?? new URL("../bin/labsweep.js", import.meta.url).pathname;

export function tempDir(name) {
  return mkdtempSync(join(tmpdir(), `labsweep-bench-${name}-`));
}

/**
 * Removes a benchmark's files, or with BENCH_TRASH set moves them into that dir for the caller to
 * delete once every timing is over. On ext4 without a journal (these VMs) each new inode is
 * found by stepping past every inode deleted in the last ~30 s, so the thousands a round deletes
 * would slow the next timed round's mkdirs and file creations, most for the build that creates
 * the most: a cost of the harness, not of labsweep.
 */
export function cleanup(dir) {
  const trash = process.env.BENCH_TRASH;
  if (!trash || !existsSync(dir)) {
    rmSync(dir, { recursive: true, force: true });
    return;
  }
  trashed += 1;
  renameSync(dir, join(trash, `${basename(dir)}-${process.pid}-${trashed}`));
}
let trashed = 0;

/** Runs a shell command, returns wall seconds and peak RSS (MB) from GNU time if present. */
export function timeShell(command, options = {}) {
  const started = performance.now();
  const run = spawnSync("/bin/sh", ["-c", command], { stdio: ["ignore", "ignore", "pipe"], ...options });
  const seconds = (performance.now() - started) / 1000;
  if (run.status !== 0) throw new Error(`failed (${run.status}): ${command}\n${run.stderr}`);
  return seconds;
}

/** Median of numbers. */
export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

export function report(name, fields) {
  const text = Object.entries(fields)
    .map(([key, value]) => `${key}=${typeof value === "number" ? Number(value.toFixed(3)) : value}`)
    .join(" ");
  console.log(`${name}: ${text}`);
}

/**
 * Runs the simulated agents (simulated-agents.mjs) in a process of their own, as real agents
 * would be: mode "work" or "health", agents spread over `urls`. Resolves {done, seconds,
 * cpuSeconds} (the agents' own CPU).
 */
export function runSimulatedAgents(mode, urls, agents, slots, token) {
  return new Promise((resolve, reject) => {
    const script = new URL("./simulated-agents.mjs", import.meta.url).pathname;
    const child = spawn(
      process.execPath,
      [script, mode, urls.join(","), String(agents), String(slots), token],
      {
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
    });
    child.once("exit", (code) =>
      code === 0
        ? resolve(JSON.parse(out.trim().split("\n").at(-1)))
        : reject(new Error(`simulated agents exited ${code}`)),
    );
  });
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
export function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (100/s)
}

/**
 * Starts `labsweep serve CONFIG` in `cwd` with extra args; resolves {child, url} once it printed
 * its URL. Its stderr goes to ours.
 */
export function startServe(cwd, config, args) {
  // BENCH_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", to profile the coordinators.
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, CLI, "serve", config, "--port", "0", ...args], {
    cwd,
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const url = /^(https?:\/\/\S+)$/m.exec(out)?.[1];
      if (url) resolve({ child, url });
    });
    child.once("exit", (code) => reject(new Error(`serve exited ${code}`)));
  });
}

/** Stops a child with SIGTERM and waits for it. */
export async function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

/** Writes `dir/sweep.yaml`: one phase of `count` no-op tasks (`command: "true"`), results in `out/`. */
export function writeNoopSweep(dir, count) {
  const values = Array.from({ length: count }, (_, i) => i).join(", ");
  writeFileSync(
    join(dir, "sweep.yaml"),
    `command: "true"\nnoop:\n  output_dir: out\n  combinations:\n    - i: [${values}]\n`,
  );
}
