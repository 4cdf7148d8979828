// 400 × `sleep 0.1` with 8 slots through `labsweep run`, start-up included: efficiency is the
// ideal wall time (400 × 0.1 s / 8 = 5 s) over the measured one. Baseline in the same script:
// `xargs -P 8` running the same 400 sleeps (the floor: process start and nothing else).
// Target (issue 14): labsweep's efficiency ≥ 0.95. Rounds alternate; medians are compared.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { CLI, cleanup, median, report, tempDir, timeShell } from "./lib.mjs";

const TASKS = Number(process.env.BENCH_TASKS ?? 400);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SLOTS = 8;
const ideal = (TASKS * 0.1) / SLOTS;
const dir = tempDir("sleep");
const values = Array.from({ length: TASKS }, (_, i) => i).join(", ");
writeFileSync(
  join(dir, "sweep.yaml"),
  `command: sleep 0.1\nsleep:\n  output_dir: out\n  retries: 0\n  combinations:\n    - i: [${values}]\n`,
);
const labsweep = [];
const xargs = [];
try {
  for (let round = 0; round < ROUNDS; round++) {
    xargs.push(timeShell(`seq ${TASKS} | xargs -P ${SLOTS} -n 1 sh -c 'sleep 0.1' _`));
    cleanup(join(dir, ".labsweep"));
    cleanup(join(dir, "out"));
    labsweep.push(
      timeShell(`node ${CLI} run sweep.yaml --slots ${SLOTS} --progress-every 3600`, { cwd: dir }),
    );
  }
} finally {
  cleanup(dir);
}
report("sleep-400", {
  tasks: TASKS,
  labsweep_s: median(labsweep),
  xargs_s: median(xargs),
  efficiency: ideal / median(labsweep),
  xargs_efficiency: ideal / median(xargs),
  target: "efficiency≥0.95",
});
