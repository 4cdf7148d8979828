import type { GitState, TaskUsage } from "../protocol/interfaces.js";
import type { Params, RunPolicy } from "../sweep/types.js";
import type { Db } from "./db.js";
import { sql } from "./dialect.js";
import { recordEvent } from "./recordEvent.js";

/** A row owed to `{outputDir}/final_results.csv`. */
export interface OwedRow {
  taskId: number;
  outputDir: string;
  phase: string;
  params: Params;
  metrics: Record<string, unknown>;
  wallSeconds: number | null;
  attempts: number;
  host: string | null;
  gpuIds: string | null;
  /** Null when the task was not sampled (found in a CSV, or run before sampling existed). */
  usage: TaskUsage | null;
  /** Its phase's on_oom parameter, the value that succeeded and the out-of-memory retries; absent without on_oom. */
  oom?: OomRun;
  /** The provenance of its successful attempt; absent outside git (or found in a CSV). */
  git?: GitState;
}

/** The provenance columns of a task row (migration 14), as read. */
export interface GitColumnsRead {
  git_commit: string | null;
  git_dirty: number | boolean | null;
  git_diff_sha256: string | null;
}

function gitOf(row: GitColumnsRead): { git?: GitState } {
  const git = gitStateOf(row);
  return git ? { git } : {};
}

/** A task's provenance from its columns; null when it has none. */
export function gitStateOf(row: GitColumnsRead): GitState | null {
  if (row.git_commit === null) return null;
  return { commit: row.git_commit, dirty: Boolean(Number(row.git_dirty)), diffSha256: row.git_diff_sha256 };
}

/** What on_oom did for a succeeded task (the results CSV's `<param>_used` and `oom_retries`). */
export interface OomRun {
  param: string;
  used: unknown;
  retries: number;
}

/** A task's OomRun from its row and its phase's policy; null when the phase has no on_oom. */
export function oomRunOf(
  policyJson: string | null,
  params: Params,
  oomValue: number | null,
  oomRetries: number | null,
): OomRun | null {
  const onOom = policyJson ? (JSON.parse(policyJson) as RunPolicy).onOom : undefined;
  if (!onOom) return null;
  return { param: onOom.param, used: oomValue ?? params[onOom.param] ?? null, retries: oomRetries ?? 0 };
}

interface OwedRowRecord extends GitColumnsRead {
  task_id: number;
  output_dir: string;
  phase: string;
  params_json: string;
  result_json: string | null;
  wall_seconds: number | null;
  attempts: number;
  host: string | null;
  gpu_ids: string | null;
  usage_json: string | null;
  policy_json: string | null;
  oom_value: number | null;
  oom_retries: number | null;
}

/** Which owed rows to read. */
export interface OwedRowsQuery {
  /** At most this many. (Default: 10,000) */
  limit?: number;
  /** Only this dir's. (Default: every dir's) */
  outputDir?: string;
  /** Not these dirs' (the writer leaves out dirs that failed in this drain). (Default: none) */
  skipDirs?: ReadonlySet<string>;
}

/** Rows not yet on disk, grouped by output dir (oldest first). */
export async function owedResultRows(db: Db, query: OwedRowsQuery = {}): Promise<OwedRow[]> {
  const values: unknown[] = [query.limit ?? 10_000];
  const where = ["r.written = 0"];
  if (query.outputDir !== undefined) {
    values.push(query.outputDir);
    where.push(`r.output_dir = $${values.length}`);
  }
  // Placeholders only when there are dirs to skip: the usual text stays one prepared statement.
  const skip = [...(query.skipDirs ?? [])].map((dir) => {
    values.push(dir);
    return `$${values.length}`;
  });
  if (skip.length > 0) where.push(`r.output_dir NOT IN (${skip.join(", ")})`);
  const rows = await db.all<OwedRowRecord>(
    `SELECT r.task_id, r.output_dir, r.phase, t.params_json, t.result_json, t.wall_seconds, t.host, t.gpu_ids, t.usage_json,
            t.oom_value, t.oom_retries, f.policy_json, t.git_commit, t.git_dirty, t.git_diff_sha256,
            (SELECT count(*) FROM attempts a WHERE a.task_id = t.id AND a.outcome IN ('succeeded', 'failed', 'timeout', 'hung', 'oom')) AS attempts
       FROM result_rows r JOIN tasks t ON t.id = r.task_id LEFT JOIN phases f ON f.name = t.phase
      WHERE ${where.join(" AND ")}
      ORDER BY r.output_dir, r.task_id
      LIMIT $1`,
    values,
  );
  return rows.map((row) => {
    const params = JSON.parse(row.params_json) as Params;
    const oom = oomRunOf(row.policy_json, params, row.oom_value, row.oom_retries);
    return {
      taskId: row.task_id,
      outputDir: row.output_dir,
      phase: row.phase,
      params,
      metrics: row.result_json ? (JSON.parse(row.result_json) as Record<string, unknown>) : {},
      wallSeconds: row.wall_seconds,
      attempts: row.attempts,
      host: row.host,
      gpuIds: row.gpu_ids,
      usage: row.usage_json ? (JSON.parse(row.usage_json) as TaskUsage) : null,
      ...(oom ? { oom } : {}),
      ...gitOf(row),
    };
  });
}

/** Marks rows as on disk: called only after the CSV write that holds them was fsynced. */
export async function markRowsWritten(
  db: Db,
  rows: ReadonlyArray<{ taskId: number; outputDir: string }>,
): Promise<void> {
  if (rows.length === 0) return;
  if (db.dialect === "postgres") {
    // One statement per output dir, not per row (a round trip per completion). Task ids in the
    // index's first column: a join with the batch instead was planned as a scan of every row.
    const byDir = new Map<string, number[]>();
    for (const row of rows) byDir.set(row.outputDir, [...(byDir.get(row.outputDir) ?? []), row.taskId]);
    await db.transaction(async (tx) => {
      for (const [outputDir, taskIds] of byDir)
        await tx.run(
          "UPDATE result_rows SET written = 1 WHERE task_id = ANY($2::bigint[]) AND output_dir = $1",
          [outputDir, taskIds],
        );
    });
    return;
  }
  await db.transaction(async (tx) => {
    for (const row of rows) {
      await tx.run("UPDATE result_rows SET written = 1 WHERE task_id = $1 AND output_dir = $2", [
        row.taskId,
        row.outputDir,
      ]);
    }
  });
}

/** Tasks whose row in this output dir is already on disk. */
export async function writtenRowTasks(db: Db, outputDir: string): Promise<Set<number>> {
  const rows = await db.all<{ task_id: number }>(
    "SELECT task_id FROM result_rows WHERE output_dir = $1 AND written = 1",
    [outputDir],
  );
  return new Set(rows.map((row) => row.task_id));
}

/**
 * Results CSVs already hold these tasks' rows: each task is complete (taking the CSV's metrics
 * if the ledger has none), that dir's row counts as written, and the other dirs it belongs to
 * are owed a copy. Returns how many tasks became complete. (importFoundRows, with the metrics
 * as objects.)
 */
export async function importCompletedTasks(
  db: Db,
  found: ReadonlyArray<{ taskId: number; outputDir: string; metrics: Record<string, unknown> }>,
  now: number,
): Promise<number> {
  return importFoundRows(
    db,
    found.map((row) => ({
      taskId: row.taskId,
      outputDir: row.outputDir,
      metricsJson: JSON.stringify(row.metrics),
    })),
    now,
  );
}

/** A row a results CSV holds: its task, its dir and its metrics as JSON (the tasks' result_json). */
export interface FoundRow {
  taskId: number;
  outputDir: string;
  metricsJson: string;
}

/**
 * importCompletedTasks with the metrics already JSON. Set-based, in one transaction: a
 * 100,000-row CSV is a few hundred statements, its rows taken in task order so each statement
 * walks the tables' pages in order.
 */
export async function importFoundRows(db: Db, found: readonly FoundRow[], now: number): Promise<number> {
  if (found.length === 0) return 0;
  // A CSV's rows are usually in task order already (labsweep appends them so): checked in one
  // pass, which costs far less than sorting 100,000 rows by a comparator.
  const sorted = inKeyOrder(found) ? found : [...found].sort(byKey);
  return db.transaction(async (tx) => {
    await fillFoundRows(tx, sorted);
    const completed = await withIndexesRebuilt(tx, sorted.length, () =>
      tx.run(
        `UPDATE tasks SET state = 'succeeded', result_json = f.metrics, finished_at = $1, origin = 'csv', attempt_id = NULL
           FROM found_rows f WHERE tasks.id = f.task_id AND tasks.state != 'succeeded'`,
        [now],
      ),
    );
    await tx.run(
      `UPDATE attempts SET ended_at = $1, outcome = 'superseded'
        WHERE ended_at IS NULL AND task_id IN (SELECT task_id FROM found_rows)`,
      [now],
    );
    // The found rows counted as written, each written once (not owed, then updated)...
    await tx.run(FOUND_ROWS_WRITTEN_SQL);
    // ...then the rows the found tasks owe their other dirs (a found dir's row is there already).
    await tx.run(
      oweRowsSql(
        "p.task_id = x.task_id AND p.output_dir != x.output_dir",
        "0",
        "found_rows x CROSS JOIN placements p",
      ),
    );
    await recordEvent(tx, now, "tasks_found_in_csv", null, {
      rows: found.length,
      completed: completed.changes,
      outputDirs: [...new Set(found.map((row) => row.outputDir))],
    });
    return completed.changes;
  });
}

/** Found rows by task, then dir: the order of found_rows' key. */
function byKey(a: FoundRow, b: FoundRow): number {
  return a.taskId - b.taskId || (a.outputDir < b.outputDir ? -1 : a.outputDir > b.outputDir ? 1 : 0);
}

function inKeyOrder(rows: readonly FoundRow[]): boolean {
  for (let index = 1; index < rows.length; index++)
    if (byKey(rows[index - 1] as FoundRow, rows[index] as FoundRow) > 0) return false;
  return true;
}

/**
 * Every found row as written: a new row carries its dir's first-declared active phase (as
 * oweRowsSql's rows do), or '' when no active phase places the task there; a row owed before
 * becomes written. Driven by found_rows in key order, one search of the task's placements each
 * (owing every placement of the found tasks, then finding which are written, searched twice).
 * Phases tie-broken by name: at most one row per found row, which PostgreSQL's DO UPDATE needs.
 */
const FOUND_ROWS_WRITTEN_SQL = `INSERT INTO result_rows (task_id, output_dir, phase, written)
  SELECT x.task_id, x.output_dir, coalesce(p.phase, ''), 1
    FROM found_rows x LEFT JOIN placements p
         ON p.task_id = x.task_id AND p.output_dir = x.output_dir AND p.active = 1
   WHERE NOT EXISTS (SELECT 1 FROM phases f CROSS JOIN phases g CROSS JOIN placements q
                      WHERE f.name = p.phase
                        AND (g.position < f.position OR (g.position = f.position AND g.name < f.name))
                        AND q.task_id = p.task_id AND q.phase = g.name AND q.output_dir = p.output_dir
                        AND q.active = 1)
  ON CONFLICT (task_id, output_dir) DO UPDATE SET written = 1 WHERE result_rows.written = 0`;

/** Puts the rows into the transaction's found_rows table (emptied first), keyed by (task, dir). */
async function fillFoundRows(tx: Db, rows: readonly FoundRow[]): Promise<void> {
  // Keyed by (task, dir): a task found in two dirs' CSVs has both rows on disk already.
  const columns =
    "(task_id BIGINT NOT NULL, output_dir TEXT NOT NULL, metrics TEXT, PRIMARY KEY (task_id, output_dir))";
  await tx.run(
    sql(tx, {
      // One connection: the table outlives the transaction, emptied before each use. Without
      // rowid: the key is the table, one B-tree to fill instead of a table and its key's index.
      sqlite: `CREATE TEMP TABLE IF NOT EXISTS found_rows ${columns} WITHOUT ROWID`,
      // A pooled connection: the table lives exactly as long as this transaction, which may be
      // the results writer's pass importing several dirs' rows: hence IF NOT EXISTS there too.
      postgres: `CREATE TEMP TABLE IF NOT EXISTS found_rows ${columns} ON COMMIT DROP`,
    }),
  );
  await tx.run("DELETE FROM found_rows");
  for (let start = 0; start < rows.length; start += IMPORT_BATCH) {
    const slice = rows.slice(start, start + IMPORT_BATCH);
    const values: unknown[] = [];
    for (const row of slice) values.push(row.taskId, row.outputDir, row.metricsJson);
    await tx.run(
      `INSERT INTO found_rows (task_id, output_dir, metrics) VALUES ${valuesList(slice.length)} ON CONFLICT DO NOTHING`,
      values,
    );
  }
}

/**
 * The indexes of `tasks` over the columns that marking tasks complete sets (state, finished_at).
 * An UPDATE moves a row's entry in each of them: two B-tree searches a row and index, most of the
 * time of marking 100,000 tasks.
 */
const COMPLETION_INDEXES = ["tasks_claimable", "tasks_by_state", "tasks_by_phase", "tasks_by_finished"];

/**
 * Runs `update` (of `rows` tasks) with COMPLETION_INDEXES dropped and built again after it, on
 * SQLite, when the rows are at least half the tasks: building an index sorts the table once, which
 * then costs less than moving each row's entries (about half, for a whole table). The same
 * transaction drops and builds them: a crash or an error rolls back both, and no other connection
 * ever sees the ledger without them. Their definitions are read from the schema, so they are
 * built exactly as the migrations made them. PostgreSQL: `update` alone.
 */
async function withIndexesRebuilt<T>(tx: Db, rows: number, update: () => Promise<T>): Promise<T> {
  if (tx.dialect !== "sqlite") return update();
  // Ids are numbered from 1 as tasks are added: the largest is the table's size, found in one
  // step (count(*) would read an index whole, for every dir the scan imports).
  const tasks = await tx.one<{ n: number | null }>("SELECT max(id) AS n FROM tasks");
  if (rows * 2 < (tasks?.n ?? 0)) return update();
  const indexes = await tx.all<{ name: string; sql: string }>(
    `SELECT name, sql FROM sqlite_master
      WHERE type = 'index' AND tbl_name = 'tasks' AND name IN (${COMPLETION_INDEXES.map((_, i) => `$${i + 1}`).join(", ")})`,
    COMPLETION_INDEXES,
  );
  for (const index of indexes) await tx.run(`DROP INDEX "${index.name}"`);
  const result = await update();
  for (const index of indexes) await tx.run(index.sql);
  return result;
}

/** `($1, $2, $3), ($4, $5, $6), …` for `rows` rows: the same text for every full batch. */
function valuesList(rows: number): string {
  let text = valuesLists.get(rows);
  if (text === undefined) {
    text = Array.from({ length: rows }, (_, i) => `($${3 * i + 1}, $${3 * i + 2}, $${3 * i + 3})`).join(", ");
    valuesLists.set(rows, text);
  }
  return text;
}
const valuesLists = new Map<number, string>();

/** 3 values a row: 900 parameters, far below either dialect's limit. */
const IMPORT_BATCH = 300;

/**
 * The statement that owes result rows: one per (task, output dir) of the active placements that
 * `where` selects (over `p` placements and `f` their phases), carrying the dir's first-declared
 * phase; rows already owed or written stay as they are. Portable: no bare column beside min().
 * The earlier phases are looked for from the (few) phases, each a search of placements by its
 * whole key (CROSS JOIN: SQLite's word for "in this order"), not by reading the task's every
 * placement: the first-declared phase, the usual case, has none to look for.
 * `written` is the new rows' `written`, an expression over `p` too. (Default: 0, owed)
 * `placements` is where `p` comes from: a join that yields it, to drive the search from a few
 * rows. (Default: every placement)
 */
export function oweRowsSql(where: string, written = "0", placements = "placements p"): string {
  return `INSERT INTO result_rows (task_id, output_dir, phase, written)
     SELECT p.task_id, p.output_dir, p.phase, ${written}
       FROM ${placements} JOIN phases f ON f.name = p.phase
      WHERE p.active = 1 AND (${where})
        AND NOT EXISTS (SELECT 1 FROM phases g CROSS JOIN placements q
                         WHERE g.position < f.position AND q.task_id = p.task_id AND q.phase = g.name
                           AND q.output_dir = p.output_dir AND q.active = 1)
     ON CONFLICT (task_id, output_dir) DO NOTHING`;
}

/**
 * A task that had already succeeded when a config gave it a new placement (a phase added later
 * that shares it, or a changed output_dir) is owed a row there too: rows are otherwise owed only
 * when a task succeeds. Run before the resume scan, so a row already in that dir's CSV is marked
 * written rather than written twice.
 */
export async function oweRowsToNewPlacements(db: Db): Promise<void> {
  await db.run(
    oweRowsSql(`p.task_id IN (SELECT id FROM tasks WHERE state = 'succeeded')
      AND NOT EXISTS (SELECT 1 FROM result_rows r WHERE r.task_id = p.task_id AND r.output_dir = p.output_dir)`),
  );
}

/** How many result rows are still owed to CSV files (0 once every file caught up). */
export async function owedRowCount(db: Db): Promise<number> {
  const row = await db.one<{ n: number }>("SELECT count(*) AS n FROM result_rows WHERE written = 0");
  return row?.n ?? 0;
}
