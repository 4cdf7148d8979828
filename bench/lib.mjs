// Shared helpers for benchmarks: timing, child-process runs with peak RSS, temp dirs.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const CLI = new URL("../bin/labsweep.js", import.meta.url).pathname;

export function tempDir(name) {
  return mkdtempSync(join(tmpdir(), `labsweep-bench-${name}-`));
}

export function cleanup(dir) {
  rmSync(dir, { recursive: true, force: true });
}

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
