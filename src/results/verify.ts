import { join } from "node:path";
import type { Db } from "../ledger/db.js";
import { tasksOfDir } from "../ledger/reads/verifySources.js";
import type { Params } from "../sweep/types.js";
import { metricColumns as metricColumnsOf } from "./columns.js";
import { CsvFileError, errorText, formatCell } from "./csvFile.js";
import { type CsvRecord, type CsvRecords, readCsvRecords } from "./csvRecords.js";
import { RESULTS_FILE } from "./resumeScan.js";
import { cellValue, type MatchableTask, type MetricColumn, rowKeys } from "./rowMatcher.js";

/**
 * What can be wrong with an output dir's results, as `labsweep verify` reports it:
 * - `missing`: a succeeded task placed in the dir has no row holding its metrics;
 * - `duplicate`: a second row of a task already counted;
 * - `torn`: a last row without its newline (cut short mid-append);
 * - `unknown`: a row no task placed in the dir explains (its parameters, or its metrics, are
 *   no task's);
 * - `unimported`: the row of a task the ledger has not seen succeed (the next run's resume scan,
 *   or `--fix`, takes it as the task's result);
 * - `unreadable`: the file cannot be read or parsed at all.
 * Other checks (artifacts) add kinds of their own.
 */
export type ProblemKind = "missing" | "duplicate" | "torn" | "unknown" | "unimported" | "unreadable";

export interface VerifyProblem {
  kind: ProblemKind | (string & {});
  file: string;
  /** The row's first line in `file`; null for what is not a row (a missing row). */
  line: number | null;
  /** The task the problem is about; `params` where the check knows them. */
  task: { id: number; params?: Params } | null;
  /** One sentence, without the file and the task. */
  detail: string;
}

/** One dir's verdict from one check. */
export interface DirReport {
  outputDir: string;
  /** Data rows read (torn tails included). */
  rows: number;
  problems: VerifyProblem[];
}

/**
 * A check of one output dir against the ledger. VERIFY_CHECKS lists them; artifact checksums
 * (issue 13's `verifyArtifacts`) join the list as one more.
 */
export type DirCheck = (db: Db, outputDir: string) => Promise<DirReport>;

/** The results file of every dir: each succeeded task's row exactly once, nothing else. */
export const checkResultsFile: DirCheck = async (db, outputDir) =>
  (await inspectResultsFile(db, outputDir)).report;

/** Every check `labsweep verify` runs on each output dir. */
export const VERIFY_CHECKS: readonly DirCheck[] = [checkResultsFile];

/** Runs every check on every dir, in order. */
export async function verifyOutputDirs(
  db: Db,
  outputDirs: readonly string[],
  checks: readonly DirCheck[] = VERIFY_CHECKS,
): Promise<DirReport[]> {
  const reports: DirReport[] = [];
  for (const outputDir of outputDirs) for (const check of checks) reports.push(await check(db, outputDir));
  return reports;
}

/** A task of the dir with what verify needs to judge rows. */
interface DirTask extends MatchableTask {
  state: string;
  /** Its row is owed here: it succeeded, and it and its placement are active. */
  required: boolean;
  /** The ledger still owes its row here: a running writer has not caught up, or cannot write. */
  owed: boolean;
}

/** One dir's report, with the file's records (for --fix, which moves some of them). */
export interface ResultsInspection {
  report: DirReport;
  csv: CsvRecords | null;
  /** The records a --fix moves aside, by line, with why. */
  foreign: Map<number, VerifyProblem>;
  /** Tasks whose row is missing: --fix owes them again. */
  missing: number[];
}

/** Judges one dir's final_results.csv against the tasks the ledger places there. */
export async function inspectResultsFile(db: Db, outputDir: string): Promise<ResultsInspection> {
  const file = join(outputDir, RESULTS_FILE);
  const tasks: DirTask[] = (await tasksOfDir(db, outputDir)).map((row) => ({
    id: Number(row.id),
    params: JSON.parse(row.params_json) as Params,
    state: row.state,
    required: row.state === "succeeded" && Number(row.placed) === 1,
    owed: row.written !== null && Number(row.written) === 0,
    ...(row.result_json === null ? {} : { metrics: JSON.parse(row.result_json) as Record<string, unknown> }),
  }));
  let csv: CsvRecords | null;
  try {
    csv = await readCsvRecords(file);
  } catch (error) {
    if (!(error instanceof CsvFileError)) throw error;
    const problem = { kind: "unreadable", file, line: null, task: null, detail: errorText(error) };
    return {
      report: { outputDir, rows: 0, problems: [problem] },
      csv: null,
      foreign: new Map(),
      missing: [],
    };
  }
  const problems: VerifyProblem[] = [];
  const foreign = new Map<number, VerifyProblem>();
  const counted = csv
    ? judgeRows(tasks, csv, file, (problem) => foreign.set(problem.line as number, problem))
    : [];
  problems.push(...foreign.values());
  if (csv?.torn) {
    const problem = {
      kind: "torn",
      file,
      line: csv.torn.line,
      task: null,
      detail: tornDetail(csv.torn.text),
    };
    foreign.set(csv.torn.line, problem);
    problems.push(problem);
  }
  const present = new Set(counted);
  const missing = tasks.filter((task) => task.required && !present.has(task.id));
  for (const task of missing)
    problems.push({
      kind: "missing",
      file,
      line: null,
      task: taskOf(task),
      detail: missingDetail(csv !== null, task.owed),
    });
  const rows = (csv?.rows.length ?? 0) + (csv?.torn ? 1 : 0);
  return {
    report: { outputDir, rows, problems },
    csv,
    foreign,
    missing: missing.map((task) => task.id),
  };
}

/**
 * Gives each row to the first task it counts for — same key (rowMatcher's rules) and exactly
 * that task's stored metrics, the rule the resume scan applies to tasks sharing a key, here to
 * every task — and reports the rest. Returns the ids of tasks with a row.
 */
function judgeRows(
  tasks: readonly DirTask[],
  csv: CsvRecords,
  file: string,
  report: (problem: VerifyProblem) => void,
): number[] {
  const { groupOf, metricColumns, reserved } = rowKeys(tasks, csv.header);
  const firstLine = new Map<number, number>();
  for (const record of csv.rows) {
    const group = groupOf(record.cells) ?? [];
    const holders = group.filter(
      (task) => task.state === "succeeded" && holdsStoredMetrics(record, task, metricColumns, reserved),
    );
    const owner = holders.find((task) => !firstLine.has(task.id));
    if (owner) {
      firstLine.set(owner.id, record.line);
      continue;
    }
    const problem = (kind: ProblemKind, task: DirTask | null, detail: string): void =>
      report({ kind, file, line: record.line, task: task && taskOf(task), detail });
    const [holder] = holders;
    const [only] = group;
    if (holder)
      problem(
        "duplicate",
        holder,
        `a second row of this task (the first is line ${firstLine.get(holder.id)})`,
      );
    else if (group.length === 1 && only && only.state !== "succeeded")
      problem(
        "unimported",
        only,
        `the row of a task the ledger has as ${only.state}: the next run takes it as its result`,
      );
    else if (only)
      problem(
        "unknown",
        group.length === 1 ? only : null,
        "its parameters are a task's, its metrics are not",
      );
    else problem("unknown", null, `no task of this dir has these parameters: ${rowText(csv.header, record)}`);
  }
  return [...firstLine.keys()];
}

/**
 * Whether a row's metric cells are the task's stored metrics: compared as the resume scan reads
 * a cell back (cellValue), so "0.10" written by another tool holds 0.1.
 */
function holdsStoredMetrics(
  record: CsvRecord,
  task: DirTask,
  metricColumns: readonly MetricColumn[],
  reserved: ReadonlySet<string>,
): boolean {
  const metrics = task.metrics ?? {};
  const columns = metricColumnsOf(Object.keys(metrics), reserved);
  const expected = new Map<string, string>();
  for (const [name, value] of Object.entries(metrics))
    expected.set(columns.get(name) as string, formatCell(value));
  // A metric with no column in this file cannot be held.
  const known = new Set(metricColumns.map((column) => column.column));
  for (const [column, text] of expected) if (!known.has(column) && text !== "") return false;
  return metricColumns.every(
    (column) => normal(record.cells[column.index] ?? "") === normal(expected.get(column.column) ?? ""),
  );
}

function normal(cell: string): string {
  return formatCell(cellValue(cell));
}

function missingDetail(fileExists: boolean, owed: boolean): string {
  const why = fileExists ? "no row holds this succeeded task's metrics" : "the file does not exist";
  // Owed: not yet written, which a live writer is about to do; else it was there and went.
  return owed
    ? `${why} (its row is owed: a running run or serve writes it, unless the dir cannot be written)`
    : why;
}

function taskOf(task: DirTask): { id: number; params: Params } {
  return { id: task.id, params: task.params };
}

function rowText(header: readonly string[], record: CsvRecord): string {
  const text = header.map((name, index) => `${name}=${record.cells[index] ?? ""}`).join(", ");
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

function tornDetail(text: string): string {
  const shown = text.length > 80 ? `${text.slice(0, 80)}…` : text;
  return `a last row cut short, without its newline: ${JSON.stringify(shown)}`;
}
