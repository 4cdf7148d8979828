/**
 * Fuzz of the results path, from a seeded generator (replay a failure with LABSWEEP_FUZZ_SEED):
 * hostile metric names (every column labsweep writes itself, parameter names, unicode, commas,
 * quotes, newlines, empty, very long, prototype names), hostile values (NaN-like strings, nested
 * objects, huge and tiny numbers, long text), result sizes, and the CSVs already in the output
 * dirs (malformed, torn, foreign headers, BOM + CRLF, empty), with crashes between append and
 * commit and torn tails simulated on top. For every case: nothing throws, a dir that cannot be
 * written is reported with its file, and once it is fixed every task that ran has exactly one row
 * in each of its dirs, holding its metrics. Real SQLite and PostgreSQL ledgers, real files.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { describe, expect, it } from "vitest";
import type { Db } from "../src/ledger/db.js";
import { owedRowCount } from "../src/ledger/resultRows.js";
import { METADATA_COLUMNS, metricColumns, reservedColumns } from "../src/results/columns.js";
import { formatCell } from "../src/results/csvFile.js";
import { type DrainOutcome, drainOwedResults } from "../src/results/resultsWriter.js";
import { resumeFromResults } from "../src/results/resumeScan.js";
import { ConfigError } from "../src/sweep/configError.js";
import { type LedgerBackend, useLedgerBackends } from "./helpers/postgres.js";
import { mulberry32 } from "./helpers/random.js";
import { succeedAll, sweepLedger } from "./helpers/resultsLedger.js";

const SEED = Number(process.env.LABSWEEP_FUZZ_SEED ?? 20_261_207);
const CASES = { sqlite: 24, postgres: 6 };
const backends = useLedgerBackends();

const PARAM_NAMES = ["x", "lr", "host", "wall_seconds", "metric_phase", "é", "energy_wh"];
const METRIC_NAMES = [
  "phase",
  ...METADATA_COLUMNS,
  ...PARAM_NAMES,
  "metric_phase",
  "metric_metric_phase",
  "metric_x",
  "损失",
  "a,b",
  'q"uote',
  "new\nline",
  "cr\r\nlf",
  "",
  " ",
  "x".repeat(500),
  "__proto__",
  "constructor",
  "toString",
  "NaN",
  "loss",
];
const METRIC_VALUES: unknown[] = [
  "NaN",
  "Infinity",
  "-0",
  "",
  " ",
  null,
  true,
  false,
  0,
  -1,
  1e308,
  -1e-308,
  5e-324,
  2 ** 53 + 2,
  0.1 + 0.2,
  { a: { b: [1, "x"] } },
  [1, 2, [3]],
  'a,b"c\nd',
  "😀",
  "x".repeat(10_000),
];
const PARAM_VALUES: unknown[] = [1, 2, 0.5, -3, "a,b", 'q"t', "new\nline", "", "😀", true];
/** What an output dir holds before the sweep starts. */
const EXISTING = [
  "none",
  "malformed",
  "torn",
  "foreign",
  "foreignOnly",
  "duplicateColumns",
  "empty",
  "headerOnly",
  "bomCrlf",
] as const;
type Kind = (typeof EXISTING)[number];

type Random = () => number;
const pick = <T>(random: Random, list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;

interface Case {
  yaml: string;
  dirs: string[];
  params: string[];
  existing: Map<string, Kind>;
  crash: boolean;
  tear: boolean;
}

/** Case `index`: its first dir holds each kind of existing CSV in turn, so every kind is tried. */
function generate(random: Random, index: number): Case {
  const params = [...new Set([pick(random, PARAM_NAMES), pick(random, PARAM_NAMES)])].slice(
    0,
    1 + Math.floor(random() * 2),
  );
  const combos = params
    .map((name) => {
      const values = [...new Set([pick(random, PARAM_VALUES), pick(random, PARAM_VALUES), random()])];
      return `    - ${JSON.stringify(name)}: ${JSON.stringify(values)}`;
    })
    .join("\n");
  // Two phases into one dir run two commands over equal parameters: rows differ in metrics only.
  const shared = random() < 0.5;
  const dirs = shared ? ["out/a"] : ["out/a", "out/b"];
  const phase = (name: string, dir: string) =>
    `${name}:\n  command: ${name} run\n  output_dir: ${dir}\n  combinations:\n${combos}\n`;
  const yaml = phase("train", "out/a") + phase("eval", shared ? "out/a" : "out/b");
  return {
    yaml,
    dirs,
    params,
    existing: new Map(
      dirs.map((dir, i) => [
        dir,
        i === 0 ? (EXISTING[index % EXISTING.length] as Kind) : pick(random, EXISTING),
      ]),
    ),
    crash: random() < 0.5,
    tear: random() < 0.5,
  };
}

/** A CSV as another tool or a crash left it; its rows never match a task (`nomatch` values). */
function existingCsv(kind: Kind, params: string[]): string | null {
  const header = ["phase", ...params, "their_metric"].map((name) => JSON.stringify(name)).join(",");
  const row = (n: number) => ["p", ...params.map(() => `nomatch-${n}`), String(n)].join(",");
  switch (kind) {
    case "none":
      return null;
    case "malformed":
      return `${header}\n"p"x,1,2\n`;
    case "torn":
      return `${header}\n${row(1)}\n${row(2)}`.slice(0, -1);
    case "foreign":
      return `${header}\n${row(1)}\n`;
    case "foreignOnly":
      return "foo,bar\n1,2\n";
    case "duplicateColumns":
      return `${header},their_metric,phase\n${row(1)},3,p\n`;
    case "empty":
      return "";
    case "headerOnly":
      return `${header}\n`;
    case "bomCrlf":
      return `\ufeff${header}\r\n${row(1)}\r\n`;
  }
}

function randomMetrics(random: Random, taskId: number): Record<string, unknown> {
  const size = random() < 0.1 ? 300 : Math.floor(random() * 12);
  const entries: Array<[string, unknown]> = [];
  for (let i = 0; i < size; i++) {
    // A large result: many metrics, and no 10 kB value in each.
    if (size > 12) entries.push([`m${i}`, i % 7 === 0 ? pick(random, METRIC_VALUES) : random()]);
    else entries.push([pick(random, METRIC_NAMES), pick(random, METRIC_VALUES)]);
  }
  // fromEntries defines "__proto__" as an own key, as JSON.parse does for a task's result.
  return Object.fromEntries([...entries, ["tid", `task-${taskId}`]]);
}

/** Simulates a writer killed after its append: some rows owed again, maybe the last one torn. */
async function crash(db: Db, root: string, random: Random, tear: boolean): Promise<void> {
  const rows = await db.all<{ task_id: number }>("SELECT task_id FROM result_rows WHERE written = 1");
  for (const { task_id } of rows)
    if (random() < 0.5) await db.run("UPDATE result_rows SET written = 0 WHERE task_id = $1", [task_id]);
  await db.run("DELETE FROM result_files");
  const csv = join(root, "out", "a", "final_results.csv");
  if (!tear || !existsSync(csv)) return;
  const text = readFileSync(csv, "utf8");
  const lastRow = text.slice(text.lastIndexOf("\n", text.length - 2) + 1);
  const lastTask = /task-(\d+)/.exec(lastRow)?.[1];
  if (lastTask === undefined) return;
  // Its row was being appended: owed, and cut anywhere after its first byte.
  await db.run("UPDATE result_rows SET written = 0 WHERE task_id = $1", [Number(lastTask)]);
  const cut = 1 + Math.floor(random() * (Buffer.byteLength(lastRow) - 1));
  truncateSync(csv, Buffer.byteLength(text) - cut);
}

async function drain(db: Db): Promise<DrainOutcome> {
  const outcome = await drainOwedResults(db);
  for (const failed of outcome.failed) expect(failed.error).toContain(failed.outputDir);
  return outcome;
}

async function runCase(backend: LedgerBackend, random: Random, index: number): Promise<void> {
  const spec = generate(random, index);
  let ledger: Awaited<ReturnType<typeof sweepLedger>>;
  try {
    ledger = await sweepLedger(backend, spec.yaml);
  } catch (error) {
    // A config labsweep refuses must say so clearly, not crash elsewhere.
    expect(error).toBeInstanceOf(ConfigError);
    return;
  }
  const { db, root } = ledger;
  for (const [dir, kind] of spec.existing) {
    const text = existingCsv(kind, spec.params);
    if (text === null) continue;
    mkdirSync(join(root, dir), { recursive: true });
    writeFileSync(join(root, dir, "final_results.csv"), text);
  }
  const resumed = await resumeFromResults(db, 1500);
  expect(resumed.failedDirs).toBe([...spec.existing.values()].filter((kind) => kind === "malformed").length);
  const metrics = new Map<number, Record<string, unknown>>();
  await succeedAll(db, (_params, taskId) => {
    const result = randomMetrics(random, taskId);
    metrics.set(taskId, JSON.parse(JSON.stringify(result)) as Record<string, unknown>);
    return { metrics: result };
  });
  const first = await drain(db);
  for (const failed of first.failed) expect(failed.error).toMatch(/malformed CSV file/);
  if (spec.crash) {
    await crash(db, root, random, spec.tear);
    await drain(db);
  }
  // Fix what cannot be written: the next drain writes every owed row.
  for (const [dir, kind] of spec.existing)
    if (kind === "malformed") rmSync(join(root, dir, "final_results.csv"));
  expect((await drain(db)).failed).toEqual([]);
  expect(await owedRowCount(db)).toBe(0);
  await checkFiles(db, root, spec, metrics);
}

/** Every task that ran has exactly one row in each of its dirs, with every metric in its column. */
async function checkFiles(
  db: Db,
  root: string,
  spec: Case,
  metrics: Map<number, Record<string, unknown>>,
): Promise<void> {
  const reserved = reservedColumns(spec.params);
  for (const dir of spec.dirs) {
    const placed = await db.all<{ task_id: number }>(
      "SELECT DISTINCT p.task_id FROM placements p JOIN tasks t ON t.id = p.task_id WHERE p.output_dir = $1 AND t.origin = 'run'",
      [join(root, dir)],
    );
    if (placed.length === 0) continue;
    const [header = [], ...rows] = parse(readFileSync(join(root, dir, "final_results.csv")), {
      bom: true,
      relax_column_count: true,
    }) as string[][];
    // Columns appear once, but for those another tool's file already had twice.
    const twice = header.filter((name, index) => header.indexOf(name) !== index);
    const theirs = spec.existing.get(dir) === "duplicateColumns" ? ["phase", "their_metric"] : [];
    expect(
      twice.filter((name) => !theirs.includes(name)),
      JSON.stringify(header),
    ).toEqual([]);
    const tidColumn = header.indexOf("tid");
    for (const { task_id: taskId } of placed) {
      const own = rows.filter((row) => row[tidColumn] === `task-${taskId}`);
      expect(own, `rows of task ${taskId} in ${dir}`).toHaveLength(1);
      const taskMetrics = metrics.get(taskId) ?? {};
      const columns = metricColumns(Object.keys(taskMetrics), reserved);
      for (const [name, value] of Object.entries(taskMetrics)) {
        const column = header.indexOf(columns.get(name) as string);
        expect(own[0]?.[column], `metric ${JSON.stringify(name)} of task ${taskId}`).toBe(formatCell(value));
      }
    }
  }
}

describe.each(backends)("results fuzz on $name", (backend) => {
  it(`keeps every owed row exactly once under hostile metrics and files (seed ${SEED})`, async () => {
    const random = mulberry32(SEED + (backend.name === "postgres" ? 1 : 0));
    for (let index = 0; index < CASES[backend.name]; index++) {
      const state = random();
      try {
        await runCase(backend, mulberry32(Math.floor(state * 2 ** 32)), index);
      } catch (error) {
        throw new Error(`case ${index} (inner seed ${Math.floor(state * 2 ** 32)}) failed`, { cause: error });
      }
    }
  }, 60_000);
});
