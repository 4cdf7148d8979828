import type { TaskState } from "../../protocol/interfaces.js";
import type { Db } from "../db.js";
import { DashboardQueryError, decodeCursor, encodeCursor } from "./cursor.js";
import type { Overview } from "./overview.js";
import { jsonEquals, SqlParams } from "./sql.js";

export const TASK_STATES: TaskState[] = ["pending", "running", "succeeded", "failed", "blocked", "cancelled"];
export const TASK_SORTS = ["id", "state", "phase", "wall", "finished"] as const;
export type TaskSort = (typeof TASK_SORTS)[number];

export interface TaskQuery {
  state?: TaskState;
  /** Tasks placed in this phase. */
  phase?: string;
  /** Parameter equals value, all of them. */
  params?: Array<{ key: string; value: string }>;
  /** Text in the parameters or the command. */
  text?: string;
  /** (Default: id) */
  sort?: TaskSort;
  /** (Default: asc) */
  dir?: "asc" | "desc";
  /** Rows per page, 1–500. (Default: 50) */
  limit?: number;
  /** The `next` cursor of the previous page. */
  after?: string;
}

export interface TaskListRow {
  id: number;
  state: TaskState;
  phase: string;
  params: Record<string, unknown>;
  attempts: number;
  wallSeconds: number | null;
  finishedAt: number | null;
  host: string | null;
}

export interface TaskPage {
  rows: TaskListRow[];
  /** Cursor of the next page; null on the last one. */
  next: string | null;
  /** Tasks matching the filter, when it can be known cheaply; null otherwise. */
  total: number | null;
  /**
   * Set when a scan over a parameter or text filter ran out of its time budget before the page
   * filled: tasks up to this id were searched, `next` continues from there.
   */
  searchedTo: number | null;
}

interface SortSpec {
  /** Key columns, ending in t.id; the first may be NULL when `nullable`. */
  columns: string[];
  nullable: boolean;
}

const SORTS: Record<TaskSort, SortSpec> = {
  id: { columns: ["t.id"], nullable: false },
  state: { columns: ["t.state", "t.id"], nullable: false },
  // tasks_by_phase's order: phase, then state (runnable and active break ties), then id.
  phase: { columns: ["t.phase", "t.state", "t.runnable", "t.active", "t.id"], nullable: false },
  wall: { columns: ["t.wall_seconds", "t.id"], nullable: true },
  finished: { columns: ["t.finished_at", "t.id"], nullable: true },
};

/** Ids scanned per step when a filter cannot use an index, and the time a page may spend. */
const SCAN_WINDOW = 10_000;
const SCAN_BUDGET_MS = 100;

/**
 * One page of the task table, by keyset (the last row's sort key, then id): any page costs the
 * same as the first. Sorts and the state filter use indexes (migration 5); parameter and text
 * filters scan in id order in windows and stop at a time budget, saying how far they got.
 */
export async function taskPage(
  db: Db,
  query: TaskQuery,
  overview: Overview | null,
  /** Whether `overview` reflects the ledger now: only then are its counts a page's total. */
  fresh = true,
): Promise<TaskPage> {
  const sort = SORTS[query.sort ?? "id"];
  if (!sort) throw new DashboardQueryError(`sort must be one of ${TASK_SORTS.join(", ")}`);
  const desc = query.dir === "desc";
  const limit = Math.min(500, Math.max(1, Math.floor(query.limit ?? 50)));
  const cursor = query.after === undefined ? null : decodeCursor(query.after, sort.columns.length);
  const filters = new SqlParams();
  const where = ["t.active = 1", ...filterConditions(db, filters, query, overview)];
  const scanning = Boolean(query.text || query.params?.length);
  const total = fresh ? cheapTotal(query, overview) : null;
  if (scanning && (query.sort ?? "id") === "id" && db.dialect === "sqlite") {
    return scanPage(db, where, filters, desc, limit, cursor, total);
  }
  const rows: Record<string, unknown>[] = [];
  if (!sort.nullable) {
    const params = new SqlParams();
    params.values.push(...filters.values);
    const conditions = [...where];
    if (cursor) conditions.push(rowCompare(sort.columns, cursor, desc, params));
    rows.push(...(await select(db, conditions, params, orderBy(sort.columns, desc), limit + 1)));
  } else {
    // Rows with a value first (in either direction), then those without, by id.
    const [column, id] = sort.columns as [string, string];
    const inNulls = cursor !== null && cursor[0] === null;
    if (!inNulls) {
      const params = new SqlParams();
      params.values.push(...filters.values);
      const conditions = [...where, `${column} IS NOT NULL`];
      if (cursor) conditions.push(rowCompare(sort.columns, cursor, desc, params));
      rows.push(...(await select(db, conditions, params, orderBy(sort.columns, desc), limit + 1)));
    }
    if (rows.length <= limit) {
      const params = new SqlParams();
      params.values.push(...filters.values);
      const conditions = [...where, `${column} IS NULL`];
      if (inNulls) conditions.push(`${id} ${desc ? "<" : ">"} ${params.add(cursor?.[1])}`);
      rows.push(...(await select(db, conditions, params, orderBy([id], desc), limit + 1 - rows.length)));
    }
  }
  const page = rows.slice(0, limit).map(toListRow);
  const last = rows.length > limit ? rows[limit - 1] : undefined;
  return {
    rows: page,
    next: last ? encodeCursor(sort.columns.map((column) => last[column.slice(2)] ?? null)) : null,
    total,
    searchedTo: null,
  };
}

/** Id-ordered pages under filters no index serves: windows of ids until full or out of time. */
async function scanPage(
  db: Db,
  where: string[],
  filters: SqlParams,
  desc: boolean,
  limit: number,
  cursor: unknown[] | null,
  total: number | null,
): Promise<TaskPage> {
  const bounds = await db.one<{ lo: number | null; hi: number | null }>(
    // Two subqueries: SQLite answers min() and max() from the index only one per SELECT.
    "SELECT (SELECT min(id) FROM tasks) AS lo, (SELECT max(id) FROM tasks) AS hi",
  );
  const lo = Number(bounds?.lo ?? 0);
  const hi = Number(bounds?.hi ?? 0);
  let from = cursor ? Number(cursor[0]) : desc ? hi + 1 : lo - 1;
  const started = performance.now();
  const rows: Record<string, unknown>[] = [];
  while (rows.length <= limit) {
    const exhausted = desc ? from <= lo : from >= hi;
    if (exhausted) break;
    const to = desc ? Math.max(lo - 1, from - SCAN_WINDOW) : Math.min(hi, from + SCAN_WINDOW);
    const params = new SqlParams();
    params.values.push(...filters.values);
    const range = desc
      ? `t.id < ${params.add(from)} AND t.id > ${params.add(to)}`
      : `t.id > ${params.add(from)} AND t.id <= ${params.add(to)}`;
    const found = await select(
      db,
      [...where, range],
      params,
      orderBy(["t.id"], desc),
      limit + 1 - rows.length,
    );
    rows.push(...found);
    if (rows.length > limit) break;
    from = to;
    if (performance.now() - started > SCAN_BUDGET_MS) {
      const more = desc ? from > lo : from < hi;
      return {
        rows: rows.map(toListRow),
        next: more ? encodeCursor([from]) : null,
        total,
        searchedTo: more ? from : null,
      };
    }
  }
  const page = rows.slice(0, limit);
  const last = rows.length > limit ? page.at(-1) : undefined;
  return {
    rows: page.map(toListRow),
    next: last ? encodeCursor([last.id]) : null,
    total,
    searchedTo: null,
  };
}

function filterConditions(db: Db, params: SqlParams, query: TaskQuery, overview: Overview | null): string[] {
  const conditions: string[] = [];
  if (query.state !== undefined) {
    if (!TASK_STATES.includes(query.state))
      throw new DashboardQueryError(`state must be one of ${TASK_STATES.join(", ")}`);
    conditions.push(`t.state = ${params.add(query.state)}`);
  }
  if (query.phase !== undefined) {
    const size = overview?.phases.find((phase) => phase.name === query.phase)?.unique;
    const all = overview?.totals.unique ?? 0;
    const at = params.add(query.phase);
    // A small phase: list its tasks from placements_by_phase. A large one: test each task met.
    conditions.push(
      size !== undefined && size <= Math.max(1000, all / 5)
        ? `t.id IN (SELECT task_id FROM placements WHERE phase = ${at} AND active = 1)`
        : `EXISTS (SELECT 1 FROM placements p WHERE p.task_id = t.id AND p.phase = ${at} AND p.active = 1)`,
    );
  }
  for (const { key, value } of query.params ?? []) {
    if (key === "") throw new DashboardQueryError("a parameter filter needs a parameter name");
    conditions.push(jsonEquals(db, params, "params_json", key, value));
  }
  if (query.text) {
    const pattern = params.add(`%${query.text.replace(/[\\%_]/g, (char) => `\\${char}`)}%`);
    const like = db.dialect === "postgres" ? "ILIKE" : "LIKE";
    conditions.push(
      `(t.params_json ${like} ${pattern} ESCAPE '\\' OR t.command ${like} ${pattern} ESCAPE '\\')`,
    );
  }
  return conditions;
}

/** Exact totals the overview already knows: no filter, a state, a phase, or both. */
function cheapTotal(query: TaskQuery, overview: Overview | null): number | null {
  if (!overview || query.text || query.params?.length) return null;
  if (query.phase !== undefined) {
    const phase = overview.phases.find((candidate) => candidate.name === query.phase);
    if (!phase) return 0;
    if (query.state === undefined) return phase.unique;
    return phase.byState ? phase.byState[query.state] : null;
  }
  if (query.state !== undefined) return overview.byState[query.state];
  return overview.totals.unique;
}

async function select(
  db: Db,
  conditions: string[],
  params: SqlParams,
  order: string,
  limit: number,
): Promise<Record<string, unknown>[]> {
  return db.all<Record<string, unknown>>(
    `SELECT t.id, t.state, t.phase, t.runnable, t.active, t.params_json, t.attempts, t.wall_seconds,
            t.finished_at, t.host
       FROM tasks t WHERE ${conditions.join(" AND ")} ORDER BY ${order} LIMIT ${params.add(limit)}`,
    params.values,
  );
}

function orderBy(columns: string[], desc: boolean): string {
  return columns.map((column) => `${column}${desc ? " DESC" : ""}`).join(", ");
}

/** `(a, b, id) > ($1, $2, $3)`: a row-value comparison, which SQLite and PostgreSQL both range-scan an index with. */
function rowCompare(columns: string[], values: unknown[], desc: boolean, params: SqlParams): string {
  const placeholders = values.map((value) => params.add(value));
  if (columns.length === 1) return `${columns[0]} ${desc ? "<" : ">"} ${placeholders[0]}`;
  return `(${columns.join(", ")}) ${desc ? "<" : ">"} (${placeholders.join(", ")})`;
}

function toListRow(row: Record<string, unknown>): TaskListRow {
  return {
    id: Number(row.id),
    state: row.state as TaskState,
    phase: String(row.phase),
    params: JSON.parse(String(row.params_json)) as Record<string, unknown>,
    attempts: Number(row.attempts),
    wallSeconds: row.wall_seconds == null ? null : Number(row.wall_seconds),
    finishedAt: row.finished_at == null ? null : Number(row.finished_at),
    host: (row.host as string | null) ?? null,
  };
}
