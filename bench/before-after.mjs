// Before and after a change, in one script: builds BASE (a commit) in a temporary worktree and
// runs the end-to-end benchmarks against it and against this checkout, alternating rounds so
// machine noise hits both alike. Prints each figure's median for both and the ratio after/before
// (for times, < 1 is faster; for rates, > 1 is faster). The benchmarks drive the CLI only, so two
// builds with the same command line compare fairly.
//
// Usage: npm run build && node bench/before-after.mjs BASE_COMMIT [ROUNDS]
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { median } from "./lib.mjs";

const base = process.argv[2];
const rounds = Number(process.argv[3] ?? 3);
if (!base) {
  console.error("usage: node bench/before-after.mjs BASE_COMMIT [ROUNDS]");
  process.exit(2);
}
const root = new URL("..", import.meta.url).pathname;
const here = join(root, "bin/labsweep.js");
const baseDir = mkdtempSync(join(tmpdir(), "labsweep-bench-base-"));
// Every round's files are deleted at the end, not between timed rounds (see cleanup in lib.mjs).
const trash = mkdtempSync(join(tmpdir(), "labsweep-bench-trash-"));

// Each benchmark, the environment that sizes it, and the figures compared (with their direction).
const benches = [
  {
    file: "noop-2000.mjs",
    env: { BENCH_TASKS: "1000", BENCH_ROUNDS: "1" },
    figures: { labsweep_s: "lower" },
  },
  {
    file: "idle-gap.mjs",
    env: { BENCH_TASKS: "150" },
    figures: { gap_p50_ms: "lower", gap_p99_ms: "lower" },
  },
  {
    file: "coordinator-throughput.mjs",
    env: { BENCH_TASKS: "8000" },
    figures: { completions_per_s: "higher", server_cpu_ms_per_completion: "lower" },
  },
  {
    file: "startup.mjs",
    env: { BENCH_ROUNDS: "3" },
    figures: {
      help_s: "lower",
      status_s: "lower",
      run_one_s: "lower",
      run_one_no_dashboard_s: "lower",
      exit_lag_s: "lower",
    },
  },
  {
    file: "sleep-400.mjs",
    env: { BENCH_ROUNDS: "1" },
    figures: { labsweep_s: "lower" },
  },
];

function figuresOf(output, wanted) {
  const found = {};
  for (const key of Object.keys(wanted)) {
    const match = output.match(new RegExp(`\\b${key}=([0-9.]+)`));
    if (match) found[key] = Number(match[1]);
  }
  return found;
}

function runBench(bench, cli) {
  const run = spawnSync(process.execPath, ["--expose-gc", join(root, "bench", bench.file)], {
    env: { ...process.env, ...bench.env, BENCH_CLI: cli, BENCH_TRASH: trash },
    encoding: "utf8",
  });
  if (run.status !== 0) throw new Error(`${bench.file} failed with ${cli}:\n${run.stdout}${run.stderr}`);
  return figuresOf(run.stdout, bench.figures);
}

try {
  execFileSync("git", ["-C", root, "worktree", "add", "--detach", baseDir, base], { stdio: "ignore" });
  symlinkSync(join(root, "node_modules"), join(baseDir, "node_modules"));
  execFileSync(
    process.execPath,
    [join(root, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json"],
    {
      cwd: baseDir,
      stdio: "inherit",
    },
  );
  // Since the CLI is bundled, bin/labsweep.js runs dist/bundle/: build it as `npm run build` does.
  const bundle = join(baseDir, "scripts/bundle.mjs");
  if (existsSync(bundle)) execFileSync(process.execPath, [bundle], { cwd: baseDir, stdio: "inherit" });
  const before = join(baseDir, "bin/labsweep.js");
  if (!existsSync(before)) throw new Error(`no bin/labsweep.js at ${base}`);
  console.log(`before: ${base}   after: this checkout   rounds: ${rounds}`);
  for (const bench of benches) {
    const samples = { before: [], after: [] };
    for (let round = 0; round < rounds; round++) {
      samples.before.push(runBench(bench, before));
      samples.after.push(runBench(bench, here));
    }
    for (const [key, direction] of Object.entries(bench.figures)) {
      const was = median(samples.before.map((figures) => figures[key]));
      const now = median(samples.after.map((figures) => figures[key]));
      console.log(
        `${bench.file.replace(".mjs", "")} ${key}: before=${was} after=${now} ratio=${(now / was).toFixed(3)} (${direction} is better)`,
      );
    }
  }
} finally {
  spawnSync("git", ["-C", root, "worktree", "remove", "--force", baseDir], { stdio: "ignore" });
  rmSync(baseDir, { recursive: true, force: true });
  rmSync(trash, { recursive: true, force: true });
}
