// 2,000 no-op tasks (`true`) with 8 slots through `labsweep run`, against `xargs -P 8` running
// the same 2,000 commands in the same script. Target (issue 14): labsweep ≤ 1.5× xargs,
// start-up included, ledger durable, results written.
// Rounds alternate so background noise hits both alike; medians are compared.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { CLI, cleanup, median, report, tempDir, timeShell } from "./lib.mjs";

const TASKS = Number(process.env.BENCH_TASKS ?? 2000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const dir = tempDir("noop");
const values = Array.from({ length: TASKS }, (_, i) => i).join(", ");
writeFileSync(
  join(dir, "sweep.yaml"),
  `command: "true"\nnoop:\n  output_dir: out\n  retries: 0\n  combinations:\n    - i: [${values}]\n`,
);
const labsweep = [];
const xargs = [];
try {
  for (let round = 0; round < ROUNDS; round++) {
    xargs.push(timeShell(`seq ${TASKS} | xargs -P 8 -n 1 true`));
    cleanup(join(dir, ".labsweep"));
    cleanup(join(dir, "out"));
    labsweep.push(timeShell(`node ${CLI} run sweep.yaml --slots 8 --progress-every 3600`, { cwd: dir }));
  }
} finally {
  cleanup(dir);
}
const ratio = median(labsweep) / median(xargs);
report("noop-2000", {
  tasks: TASKS,
  labsweep_s: median(labsweep),
  xargs_s: median(xargs),
  ratio_vs_xargs: ratio,
  target: "≤1.5",
});
