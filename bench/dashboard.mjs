// The dashboard over a 1,000,000-task ledger (100,000 succeeded with metrics, 500 failed, the
// rest pending): first meaningful paint of `/` in headless Chromium (navigation start → the
// overview's numbers rendered), task-table pages (default sort, a state filter, a parameter
// filter, text search, another sort, a deep page) and a results plot aggregated over 100,000
// results. Targets: paint ≤ 1 s, a table page ≤ 200 ms, the aggregation ≤ 500 ms.
// Baselines in the same script: the same reads as bare better-sqlite3 queries (the storage
// floor), and Chromium loading a tiny JSON document from the same server (the browser floor).
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { cleanup, median, report, tempDir } from "./lib.mjs";

const TASKS = Number(process.env.BENCH_TASKS ?? 1_000_000);
const SUCCEEDED = Number(process.env.BENCH_SUCCEEDED ?? 100_000);
const CHROMIUM = process.env.LABSWEEP_CHROMIUM ?? "/usr/bin/chromium";
const dist = new URL("../dist/", import.meta.url).href;
const { openLedger } = await import(`${dist}ledger/openLedger.js`);
const { default: Database } = await import("better-sqlite3");
const { chromium } = await import("playwright-core");

const dir = tempDir("dashboard");
const stateDir = join(dir, ".labsweep");

/** Builds the ledger with set-based SQL: params {dataset, lr, width, poison, seed}, seed fastest. */
async function buildLedger() {
  const started = performance.now();
  const db = await openLedger(stateDir);
  await db.run(
    `INSERT INTO phases (name, config_file, cwd, policy_json, position, after_json, gate_json, state, reason) VALUES
       ('grid', '${dir}/sweep.yaml', '${dir}', '{}', 0, '[]', '{"kind":"all_succeeded"}', 'open', NULL),
       ('followup', '${dir}/sweep.yaml', '${dir}', '{}', 1, '["grid"]', '{"kind":"all_succeeded"}', 'waiting', 'waiting for grid')`,
  );
  await db.run(
    `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $1 - 1)
     INSERT INTO tasks (id, signature, params_json, command, phase, state, runnable, attempts, result_json,
                        wall_seconds, host, finished_at, origin)
     SELECT i + 1, 'sig' || i,
            json_object('dataset', 'moons', 'lr', (i / 10000) % 100, 'width', (i / 100) % 100,
                        'poison', ((i / 10) % 10) / 10.0, 'seed', i % 10),
            'python3 train.py --run ' || i, 'grid',
            CASE WHEN i < $2 THEN 'succeeded' WHEN i < $2 + 500 THEN 'failed' ELSE 'pending' END,
            1, CASE WHEN i < $2 + 500 THEN 1 ELSE 0 END,
            CASE WHEN i < $2 THEN json_object('acc', 0.5 + ((i / 100) % 100) / 250.0 + ((i * 7919) % 1000) / 20000.0,
                                              'loss', ((i * 104729) % 1000) / 1000.0) END,
            CASE WHEN i < $2 THEN 10 + (i % 37) END,
            CASE WHEN i < $2 + 500 THEN 'host' || (i % 4) END,
            CASE WHEN i < $2 + 500 THEN $3 - ($2 + 500 - i) * 100 END,
            CASE WHEN i < $2 + 500 THEN 'run' END
       FROM n`,
    [TASKS, SUCCEEDED, Date.now()],
  );
  await db.run("INSERT INTO placements (task_id, phase, output_dir) SELECT id, 'grid', 'out' FROM tasks");
  await db.run("INSERT INTO events (at, kind, task_id, detail) VALUES ($1, 'bench_built', NULL, NULL)", [
    Date.now(),
  ]);
  await db.close();
  return (performance.now() - started) / 1000;
}

/** `startServer` on the ledger in a child process (its own event loop, as `labsweep serve`). */
function startCoordinator() {
  const script = `
    const { openLedger } = await import("${dist}ledger/openLedger.js");
    const { startServer } = await import("${dist}app/serve.js");
    const db = await openLedger(${JSON.stringify(stateDir)});
    const server = await startServer(db, { stateDir: ${JSON.stringify(stateDir)}, port: 0 });
    console.log(server.url);
    process.on("SIGTERM", async () => { await server.close(); await db.close(); process.exit(0); });`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    child.stdout.once("data", (chunk) => resolve({ child, url: chunk.toString().trim() }));
    child.once("exit", (code) => reject(new Error(`coordinator exited ${code}`)));
  });
}

/** 1000 more tasks succeed, written by another connection as a coordinator would. */
function addResults(count) {
  const db = new Database(join(stateDir, "ledger.sqlite"));
  const now = Date.now();
  db.prepare(
    `UPDATE tasks SET state = 'succeeded', origin = 'run', finished_at = ?, wall_seconds = 12,
            result_json = json_object('acc', 0.6, 'loss', 0.5)
      WHERE id IN (SELECT id FROM tasks WHERE state = 'pending' ORDER BY id LIMIT ?)`,
  ).run(now, count);
  db.prepare("INSERT INTO events (at, kind) VALUES (?, 'bench_results')").run(now);
  db.close();
}

async function timeGet(url, runs = 7) {
  const times = [];
  let body;
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    const response = await fetch(url);
    body = await response.json();
    times.push(performance.now() - started);
    if (!response.ok) throw new Error(`${url}: ${JSON.stringify(body)}`);
  }
  return { ms: median(times), body };
}

function floor(sql, args = [], runs = 7) {
  const db = new Database(join(stateDir, "ledger.sqlite"), { readonly: true });
  const statement = db.prepare(sql);
  const times = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    statement.all(...args);
    times.push(performance.now() - started);
  }
  db.close();
  return median(times);
}

let server;
let browser;
try {
  const buildSeconds = await buildLedger();
  server = await startCoordinator();
  const api = `${server.url}/api/v1/dashboard`;
  // The first overview (what the coordinator warms at start), then a cached one.
  const cold = await timeGet(`${api}/overview`, 1);
  const warm = await timeGet(`${api}/overview`);

  const pages = {
    page_default_ms: "/tasks?limit=50",
    page_state_failed_ms: "/tasks?limit=50&state=failed",
    page_state_pending_desc_ms: "/tasks?limit=50&state=pending&dir=desc",
    page_param_ms: "/tasks?limit=50&p.width=42",
    page_param_and_state_ms: "/tasks?limit=50&p.poison=0.3&state=succeeded",
    page_text_ms: `/tasks?limit=50&q=${encodeURIComponent("run 99999")}`,
    page_sort_finished_ms: "/tasks?limit=50&sort=finished&dir=desc",
    page_sort_phase_ms: "/tasks?limit=50&sort=phase",
  };
  const pageFigures = {};
  for (const [name, path] of Object.entries(pages)) pageFigures[name] = (await timeGet(`${api}${path}`)).ms;
  // A deep page: the cursor of page 10,000 costs what the first page costs.
  const deepCursor = Buffer.from(JSON.stringify([500_000])).toString("base64url");
  pageFigures.page_deep_ms = (await timeGet(`${api}/tasks?limit=50&after=${deepCursor}`)).ms;
  const pageFloor = floor("SELECT * FROM tasks WHERE id > ? ORDER BY id LIMIT 51", [500_000]);
  const httpFloor = (await timeGet(`${server.url}/api/v1/health`)).ms;

  // A plot's first request aggregates every result; later ones add only what finished since.
  const plotUrl = `${api}/plot?x=width&y=acc&series=poison`;
  const plot = await timeGet(plotUrl, 1);
  const plotCached = await timeGet(plotUrl, 5);
  const plotFacets = await timeGet(`${api}/plot?x=width&y=acc&series=poison&facet=lr`, 1);
  addResults(1000);
  const plotIncremental = await timeGet(plotUrl, 1);
  if (plotIncremental.body.used !== SUCCEEDED + 1000)
    throw new Error(`plot used ${plotIncremental.body.used}`);
  const aggregationFloor = floor(
    `SELECT json_extract(params_json, '$.poison') AS s, json_extract(params_json, '$.width') AS x, count(*),
            avg(json_extract(result_json, '$.acc')) FROM tasks WHERE state = 'succeeded' GROUP BY s, x`,
    [],
    3,
  );

  if (!existsSync(CHROMIUM)) throw new Error(`the paint benchmark needs Chromium at ${CHROMIUM}`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const paints = [];
  const floors = [];
  for (let i = 0; i < 5; i++) {
    const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
    const page = await context.newPage();
    await page.goto(`${server.url}/`);
    await page.waitForFunction(() => performance.getEntriesByName("overview-rendered").length > 0, null, {
      timeout: 30_000,
    });
    const painted = await page.evaluate(() => performance.getEntriesByName("overview-rendered")[0].startTime);
    const shown = await page.locator('[data-count="unique"]').textContent();
    if (shown?.replace(/\D/g, "") !== String(TASKS)) throw new Error(`overview shows ${shown} tasks`);
    paints.push(painted);
    await page.goto(`${server.url}/api/v1/health`);
    floors.push(await page.evaluate(() => performance.getEntriesByType("navigation")[0].responseEnd));
    await context.close();
  }
  const paint = median(paints);
  const browserFloor = median(floors);

  report("dashboard", {
    tasks: TASKS,
    results: SUCCEEDED,
    build_s: buildSeconds,
    overview_cold_ms: cold.body.costMs,
    overview_request_ms: warm.ms,
    first_paint_ms: paint,
    first_paint_first_visit_ms: paints[0],
    browser_floor_ms: browserFloor,
    paint_ratio_vs_floor: paint / browserFloor,
    ...pageFigures,
    page_sql_floor_ms: pageFloor,
    http_floor_ms: httpFloor,
    page_ratio_vs_http_floor: pageFigures.page_default_ms / httpFloor,
    plot_cold_ms: plot.ms,
    plot_cached_ms: plotCached.ms,
    plot_after_1000_new_results_ms: plotIncremental.ms,
    plot_facets_cold_ms: plotFacets.ms,
    plot_points: plot.body.facets[0].series.reduce((n, series) => n + series.points.length, 0),
    aggregation_sql_floor_ms: aggregationFloor,
    plot_cold_ratio_vs_floor: plot.ms / aggregationFloor,
    target: "paint≤1000ms page≤200ms plot≤500ms",
  });
  const worstPage = Math.max(...Object.values(pageFigures));
  if (paint > 1000 || worstPage > 200 || plot.ms > 500) process.exitCode = 1;
} finally {
  await browser?.close();
  if (server) {
    server.child.kill("SIGTERM");
    await new Promise((resolve) => server.child.once("exit", resolve));
  }
  cleanup(dir);
}
