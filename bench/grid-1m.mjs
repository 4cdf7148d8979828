// Plan + ledger insert of a 1,000,000-task grid (100 × 100 × 100): validate the config, expand,
// sign, de-duplicate and insert every task and placement into a fresh SQLite ledger — what
// `labsweep run` does before the first task starts. Targets (issue 14): that first run's ledger
// ≤ 15 s; `labsweep plan` of the grid ≤ 5 s and ≤ 300 MB peak RSS (GNU time's).
// Baseline in the same script: a bare better-sqlite3 insert of 1,000,000 rows of the same
// shape in one transaction (the storage floor), and `labsweep plan --json` on its own.
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { CLI, cleanup, report, tempDir } from "./lib.mjs";

const SIDE = Number(process.env.BENCH_SIDE ?? 100);
const dir = tempDir("grid");
const axis = Array.from({ length: SIDE }, (_, i) => i).join(", ");
writeFileSync(
  join(dir, "sweep.yaml"),
  `command: python3 train.py --a {a} --b {b} --c {c}\ndefaults: { epochs: 10, dataset: mnist }\ngrid:\n  output_dir: out/{dataset}\n  combinations:\n    - a: [${axis}]\n    - b: [${axis}]\n    - c: [${axis}]\n`,
);
const dist = new URL("../dist/", import.meta.url).href;
const betterSqlite = import.meta.resolve("better-sqlite3");

/** Runs a module body in a fresh node process; returns its JSON line plus peak RSS. */
function measure(body) {
  const script = `${body}\nconst rss = process.resourceUsage().maxRSS / 1024;\nconsole.log(JSON.stringify({ ...result, rssMb: rss }));`;
  const run = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    cwd: dir,
    encoding: "utf8",
  });
  if (run.status !== 0) throw new Error(run.stderr);
  return JSON.parse(run.stdout.trim().split("\n").at(-1));
}

try {
  const labsweep = measure(`
    const { openSweep } = await import("${dist}coordinator/openSweep.js");
    const { prepareLedger } = await import("${dist}app/localRun.js");
    const started = performance.now();
    const sweep = openSweep(["sweep.yaml"]);
    const prepared = await prepareLedger(".labsweep", sweep);
    const seconds = (performance.now() - started) / 1000;
    const unique = prepared.sync.unique;
    await prepared.db.close(); prepared.release();
    const result = { seconds, unique };`);
  cleanup(join(dir, ".labsweep"));
  const floor = measure(`
    const { default: Database } = await import("${betterSqlite}");
    const db = new Database("floor.sqlite"); db.pragma("journal_mode = WAL"); db.pragma("synchronous = NORMAL");
    db.exec("CREATE TABLE tasks (id INTEGER PRIMARY KEY, signature TEXT UNIQUE, params_json TEXT, command TEXT, cwd TEXT, config_file TEXT, policy_json TEXT, runnable INTEGER); CREATE TABLE placements (task_id INTEGER, phase TEXT, output_dir TEXT, PRIMARY KEY (task_id, phase, output_dir)) WITHOUT ROWID");
    const started = performance.now();
    const task = db.prepare("INSERT INTO tasks (signature, params_json, command, cwd, config_file, policy_json, runnable) VALUES (?, ?, ?, ?, ?, ?, 1)");
    const place = db.prepare("INSERT INTO placements VALUES (?, 'grid', '/tmp/out/mnist')");
    db.transaction(() => {
      for (let i = 0; i < ${SIDE ** 3}; i++) {
        const info = task.run("sig" + i, JSON.stringify({ epochs: 10, dataset: "mnist", a: i % 100, b: (i / 100 | 0) % 100, c: i / 10000 | 0 }), "python3 train.py --a 1 --b 2 --c 3", "/tmp", "/tmp/sweep.yaml", "{}");
        place.run(info.lastInsertRowid);
      }
    })();
    const result = { seconds: (performance.now() - started) / 1000 };`);
  const planStarted = performance.now();
  const plan = spawnSync(
    "/usr/bin/time",
    ["-f", "rss_kb=%M", process.execPath, CLI, "plan", "sweep.yaml", "--json"],
    {
      cwd: dir,
      encoding: "utf8",
    },
  );
  const planSeconds = (performance.now() - planStarted) / 1000;
  if (plan.status !== 0) throw new Error(plan.stderr);
  const planRssMb = Number(/rss_kb=(\d+)/.exec(plan.stderr)?.[1]) / 1024;
  report("grid-1m", {
    tasks: labsweep.unique,
    prepare_s: labsweep.seconds,
    prepare_peak_rss_mb: labsweep.rssMb,
    plan_cli_s: planSeconds,
    plan_peak_rss_mb: planRssMb,
    floor_insert_s: floor.seconds,
    ratio_vs_floor: labsweep.seconds / floor.seconds,
    target: "prepare≤15s plan≤5s,≤300MB",
  });
} finally {
  cleanup(dir);
}
