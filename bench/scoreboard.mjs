// Issue 14's figures together: runs the benchmarks behind them, one process each, and prints a
// table of each figure, its baseline from the same script, the ratio, the target and whether it
// is met — where labsweep stands at a glance. `node bench/scoreboard.mjs [NAME…]` runs only the
// benchmarks named (startup, noop-2000, sleep-400, grid-1m, resume-100k, coordinator-throughput).
// Run it on a quiet machine: every figure is a wall time.
import { spawnSync } from "node:child_process";

/** Per benchmark: its rows as [figure, value key, baseline key or null, target, met?]. */
const BOARD = {
  startup: [
    ["--help (s)", "help_s", "node_s", "≤ 0.2 s", (f) => f.help_s <= 0.2],
    ["status, 60-task ledger (s)", "status_s", "node_s", "≤ 0.2 s", (f) => f.status_s <= 0.2],
    ["run of one `true` (s)", "run_one_s", "node_s", "≤ 0.4 s", (f) => f.run_one_s <= 0.4],
    [
      "  … with --no-dashboard (s)",
      "run_one_no_dashboard_s",
      "node_s",
      "≤ 0.4 s",
      (f) => f.run_one_no_dashboard_s <= 0.4,
    ],
    ["run's exit after its last result (s)", "exit_lag_s", null, "≤ 0.05 s", (f) => f.exit_lag_s <= 0.05],
  ],
  "noop-2000": [
    ["2,000 × true, 8 slots (s)", "labsweep_s", "xargs_s", "≤ 1.5× xargs", (f) => f.ratio_vs_xargs <= 1.5],
  ],
  "sleep-400": [
    [
      "400 × sleep 0.1, 8 slots: efficiency",
      "efficiency",
      "xargs_efficiency",
      "≥ 0.95",
      (f) => f.efficiency >= 0.95,
    ],
  ],
  "grid-1m": [
    ["plan of 1,000,000 tasks (s)", "plan_cli_s", null, "≤ 5 s", (f) => f.plan_cli_s <= 5],
    ["  … its peak RSS (MB)", "plan_peak_rss_mb", null, "≤ 300 MB", (f) => f.plan_peak_rss_mb <= 300],
    ["first run's ledger of it (s)", "prepare_s", "floor_insert_s", "≤ 15 s", (f) => f.prepare_s <= 15],
  ],
  "resume-100k": [
    ["resume scan of 100,000 rows (s)", "scan_s", "csv_parse_floor_s", "≤ 1 s", (f) => f.scan_s <= 1],
  ],
  "coordinator-throughput": [
    [
      "coordinator, 32 agents × 4 slots (completions/s)",
      "completions_per_s",
      "health_requests_per_s",
      "≥ 5,000/s",
      (f) => f.completions_per_s >= 5000,
    ],
  ],
};

const chosen = process.argv.slice(2);
const rows = [["figure", "labsweep", "baseline", "ratio", "target", "met"]];
let failed = 0;
for (const [bench, figures] of Object.entries(BOARD)) {
  if (chosen.length > 0 && !chosen.includes(bench)) continue;
  const run = spawnSync(
    process.execPath,
    ["--expose-gc", new URL(`${bench}.mjs`, import.meta.url).pathname],
    {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  const line = run.stdout.split("\n").find((text) => text.startsWith(`${bench}: `));
  if (run.status !== 0 || line === undefined) {
    failed++;
    rows.push([`${bench}: failed (exit ${run.status})`, "", "", "", "", "✗"]);
    continue;
  }
  const fields = Object.fromEntries(
    line
      .slice(bench.length + 2)
      .split(" ")
      .map((pair) => pair.split("="))
      .map(([key, value]) => [key, Number.isNaN(Number(value)) ? value : Number(value)]),
  );
  for (const [figure, key, baseline, target, met] of figures) {
    const value = fields[key];
    const base = baseline === null ? undefined : fields[baseline];
    rows.push([
      figure,
      show(value),
      base === undefined ? "" : `${show(base)} (${baseline.replace(/_s$|_per_s$/, "")})`,
      base === undefined ? "" : `${show(value / base)}×`,
      target,
      met(fields) ? "yes" : "no",
    ]);
  }
}

/** Three significant digits, no exponent. */
function show(value) {
  return typeof value === "number" ? String(Number(value.toPrecision(3))) : String(value);
}

const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
const print = (row) => console.log(`| ${row.map((cell, i) => cell.padEnd(widths[i])).join(" | ")} |`);
print(rows[0]);
console.log(`|${widths.map((width) => "-".repeat(width + 2)).join("|")}|`);
for (const row of rows.slice(1)) print(row);
process.exit(failed ? 1 : 0);
