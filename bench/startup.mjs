// Start-up (issue 14): the fixed cost of a command, against Node's own start (`node -e 0`) run in
// the same script. Targets: `--help` and `status` on a 60-task ledger ≤ 0.2 s; `run` of one
// `true` task ≤ 0.4 s (as a researcher types it: with its dashboard; also shown without); `run`
// exits within 50 ms of its last result landing (exit lag: the process's end less the results
// file's last write). Rounds alternate so machine noise hits all alike; medians are compared.
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CLI, cleanup, median, report, tempDir, timeShell } from "./lib.mjs";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const dir = tempDir("startup");
const one = join(dir, "one");
const values = Array.from({ length: 60 }, (_, i) => i).join(", ");
writeFileSync(
  join(dir, "sweep.yaml"),
  `command: "true"\np:\n  output_dir: out\n  combinations:\n    - i: [${values}]\n`,
);
timeShell(
  `mkdir -p ${one} && printf 'command: "true"\\np:\\n  output_dir: out\\n  combinations:\\n    - i: [1]\\n' > ${one}/sweep.yaml`,
);
// The status ledger: the 60 tasks run once, so status reads a real, finished ledger.
timeShell(`node ${CLI} run sweep.yaml --no-dashboard`, { cwd: dir });
const samples = { node: [], help: [], status: [], run: [], bare: [], lag: [] };
/** Runs the one-task sweep afresh; returns its wall seconds and pushes its exit lag. */
function runOne(flags) {
  cleanup(join(one, ".labsweep"));
  cleanup(join(one, "out"));
  const seconds = timeShell(`node ${CLI} run sweep.yaml ${flags}`, { cwd: one });
  const ended = Date.now();
  samples.lag.push((ended - statSync(join(one, "out", "final_results.csv")).mtimeMs) / 1000);
  return seconds;
}
try {
  for (let round = 0; round < ROUNDS; round++) {
    samples.node.push(timeShell(`node -e 0`));
    samples.help.push(timeShell(`node ${CLI} --help`));
    samples.status.push(timeShell(`node ${CLI} status sweep.yaml`, { cwd: dir }));
    samples.run.push(runOne(""));
    samples.bare.push(runOne("--no-dashboard"));
  }
} finally {
  cleanup(dir);
}
const node = median(samples.node);
report("startup", {
  node_s: node,
  help_s: median(samples.help),
  status_s: median(samples.status),
  run_one_s: median(samples.run),
  run_one_no_dashboard_s: median(samples.bare),
  exit_lag_s: median(samples.lag),
  help_vs_node: median(samples.help) / node,
  status_vs_node: median(samples.status) / node,
  run_one_vs_node: median(samples.run) / node,
  target: "help,status≤0.2s run_one≤0.4s exit_lag≤0.05s",
});
