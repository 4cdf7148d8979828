// Resume scan of a 100,000-row results CSV in the original system's layout (phase, params,
// metrics; one constant parameter left out, numbers written as 4.0): every row is matched to
// its task and recorded complete. Target (issue 14): ≤ 1 s. Baseline in the same script: parsing the same
// file with csv-parse alone (the floor any scan pays).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { cleanup, report, tempDir } from "./lib.mjs";

const ROWS = Number(process.env.BENCH_ROWS ?? 100_000);
const A = 100;
const B = ROWS / A;
const dir = tempDir("resume");
const dist = new URL("../dist/", import.meta.url).href;
const { openSweep } = await import(`${dist}coordinator/openSweep.js`);
const { openLedger } = await import(`${dist}ledger/openLedger.js`);
const { syncSweep } = await import(`${dist}ledger/syncSweep.js`);
const { resumeFromResults } = await import(`${dist}results/resumeScan.js`);

writeFileSync(
  join(dir, "sweep.yaml"),
  `command: python3 train.py --a {a} --b {b}\ndefaults: { dataset: mnist, epochs: 10 }\nexp1:\n  output_dir: results_exp1/{dataset}\n  combinations:\n    - a: [${Array.from({ length: A }, (_, i) => i).join(", ")}]\n    - b: [${Array.from({ length: B }, (_, i) => i).join(", ")}]\n`,
);
const csvDir = join(dir, "results_exp1", "mnist");
mkdirSync(csvDir, { recursive: true });
const lines = ["phase,dataset,a,b,mean_test_acc,std_test_acc,mean_test_loss,num_parameters,best_epoch,seed"];
for (let a = 0; a < A; a++) {
  for (let b = 0; b < B; b++) {
    lines.push(`exp1,mnist,${a}.0,${b},0.${(a * B + b) % 9973},0.0123,1.2345,${a * 1000},${b % 50},42`);
  }
}
const csvPath = join(csvDir, "final_results.csv");
writeFileSync(csvPath, `${lines.join("\n")}\n`);

try {
  const db = await openLedger(join(dir, ".labsweep"));
  await syncSweep(db, openSweep([join(dir, "sweep.yaml")]), Date.now());
  const started = performance.now();
  const scan = await resumeFromResults(db, Date.now());
  const scanSeconds = (performance.now() - started) / 1000;
  await db.close();
  if (scan.found !== ROWS) throw new Error(`expected ${ROWS} tasks found, got ${scan.found}`);
  const floorStarted = performance.now();
  parse(readFileSync(csvPath, "utf8"));
  const floorSeconds = (performance.now() - floorStarted) / 1000;
  report("resume-100k", {
    rows: ROWS,
    found: scan.found,
    scan_s: scanSeconds,
    csv_parse_floor_s: floorSeconds,
    ratio_vs_floor: scanSeconds / floorSeconds,
    target: "≤1s",
  });
} finally {
  cleanup(dir);
}
