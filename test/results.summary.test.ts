/**
 * The summary table (results/summary.ts) against a hand-computed fixture on real ledgers
 * (SQLite and PostgreSQL): a configuration with a failed seed (flagged), n = 1 rows, a metric
 * some tasks did not report, a task in two phases; and every output format (summaryFormat.ts)
 * with a parameter value hostile to each of them.
 */
import { parse } from "csv-parse/sync";
import { describe, expect, it } from "vitest";
import { claimTask } from "../src/ledger/claimTask.js";
import type { Db } from "../src/ledger/db.js";
import { finishAttempt } from "../src/ledger/finishAttempt.js";
import {
  goalOf,
  loadSummary,
  parseMetricChoices,
  type Summary,
  SummaryOptionError,
  sortedRows,
} from "../src/results/summary.js";
import { escapeLatex, escapeMarkdown, formatSummary } from "../src/results/summaryFormat.js";
import { useLedgerBackends } from "./helpers/postgres.js";
import { sweepLedger } from "./helpers/resultsLedger.js";
import {
  EXPECTED_BY_LR_01,
  EXPECTED_MAIN,
  fixtureMetrics,
  HOSTILE,
  SUMMARY_SWEEP,
} from "./helpers/summaryFixture.js";

const backends = useLedgerBackends();

/** Runs every task to its fixture outcome: success with its metrics, or a final failure. */
async function finishAll(db: Db): Promise<void> {
  for (;;) {
    const claim = await claimTask(db, {
      worker: "w",
      host: "h",
      now: 2000,
      leaseMs: 60_000,
      fits: () => ({ gpuIds: [] }),
    });
    if (!claim) return;
    const metrics = fixtureMetrics(claim.task.params as { lr: number; tag: string; seed: number });
    await finishAttempt(
      db,
      claim.attemptId,
      metrics
        ? { kind: "succeeded", metrics, wallSeconds: 1 }
        : { kind: "failed", exitCode: 1, signal: null, error: "diverged", wallSeconds: 1 },
      3000,
    );
  }
}

async function fixtureLedger(backend: (typeof backends)[number]): Promise<Db> {
  const { db } = await sweepLedger(backend, SUMMARY_SWEEP);
  await finishAll(db);
  return db;
}

type Expected = (typeof EXPECTED_MAIN)[number]["acc"];

function expectStats(
  actual: Summary["rows"][number]["metrics"][string] | undefined,
  expected: Expected,
): void {
  expect(actual?.n).toBe(expected.n);
  expect(actual?.mean).toBeCloseTo(expected.mean, 12);
  if (expected.std === null) expect(actual?.std).toBeNull();
  else expect(actual?.std).toBeCloseTo(expected.std, 12);
  if (expected.ci === null) {
    expect(actual?.ci_low).toBeNull();
    expect(actual?.ci_high).toBeNull();
  } else {
    expect(actual?.ci_low).toBeCloseTo(expected.ci[0] as number, 9);
    expect(actual?.ci_high).toBeCloseTo(expected.ci[1] as number, 9);
  }
}

describe.each(backends)("summary on $name", (backend) => {
  it("one row per configuration of a phase: n against planned, mean ± std, t intervals, best marked", async () => {
    const db = await fixtureLedger(backend);
    const summary = await loadSummary(db, { phase: "main" });
    expect(summary.phases).toEqual(["main"]);
    expect(summary.phase_column).toBe(false);
    expect(summary.by).toEqual(["lr", "tag"]);
    expect(summary.constants).toEqual({ epochs: 5 });
    expect(summary.metrics).toEqual([
      { name: "acc", goal: "max" },
      { name: "loss", goal: "min" },
    ]);
    expect(summary.rows.map((row) => row.params)).toEqual(EXPECTED_MAIN.map((row) => row.params));
    summary.rows.forEach((row, index) => {
      const expected = EXPECTED_MAIN[index] as (typeof EXPECTED_MAIN)[number];
      expect(row.phase).toBe("main");
      expect([row.planned, row.finished, row.incomplete]).toEqual([
        expected.planned,
        expected.finished,
        expected.finished < expected.planned,
      ]);
      expectStats(row.metrics.acc, expected.acc);
      expectStats(row.metrics.loss, expected.loss);
    });
    // lr 0.01 plain: acc .9 is the highest mean, loss .2 the lowest; nothing else is marked.
    expect(summary.rows.map((row) => [row.metrics.acc?.best, row.metrics.loss?.best])).toEqual([
      [false, false],
      [true, true],
      [false, false],
      [false, false],
    ]);
  });

  it("every phase with a phase column; a task in two phases counts in each; --by pools the rest", async () => {
    const db = await fixtureLedger(backend);
    const all = await loadSummary(db);
    expect(all.phase_column).toBe(true);
    expect(all.rows.map((row) => [row.phase, row.params.lr, row.params.tag === "plain"])).toEqual([
      ["main", 0.01, false],
      ["main", 0.01, true],
      ["main", 0.1, false],
      ["main", 0.1, true],
      ["extra", 0.1, true],
    ]);
    expectStats(all.rows[4]?.metrics.acc, EXPECTED_MAIN[3]?.acc as Expected);

    const byLr = await loadSummary(db, { phase: "main", by: ["lr"] });
    expect(byLr.by).toEqual(["lr"]);
    const pooled = byLr.rows.find((row) => row.params.lr === 0.1);
    expect([pooled?.planned, pooled?.finished, pooled?.incomplete]).toEqual([6, 5, true]);
    expectStats(pooled?.metrics.acc, EXPECTED_BY_LR_01.acc);
    expectStats(pooled?.metrics.loss, EXPECTED_BY_LR_01.loss);

    // The seed itself as --by: one row per seed, n = 1 each in phase extra.
    const bySeed = await loadSummary(db, { phase: "extra", by: ["seed"] });
    expect(bySeed.rows.map((row) => [row.params.seed, row.finished, row.metrics.acc?.std])).toEqual([
      [1, 1, null],
      [2, 1, null],
      [3, 1, null],
    ]);
  });

  it("names an unknown --by parameter, --metric or --phase, with a guess", async () => {
    const db = await fixtureLedger(backend);
    await expect(loadSummary(db, { by: ["lrr"] })).rejects.toThrow(
      new SummaryOptionError(
        'unknown parameter "lrr" in --by (parameters: epochs, lr, tag, seed) — did you mean "lr"?',
      ),
    );
    await expect(loadSummary(db, { metrics: [{ name: "accc" }] })).rejects.toThrow(
      /unknown metric "accc".*did you mean "acc"\?/,
    );
    await expect(loadSummary(db, { phase: "mian" })).rejects.toThrow(
      /unknown phase "mian".*did you mean "main"\?/,
    );
  });
});

describe("summary options and order", () => {
  it("infers which way a metric improves, and takes an override", () => {
    for (const name of [
      "loss",
      "val_loss",
      "error",
      "top1_err",
      "perplexity",
      "wall_time",
      "test_mse",
      "ppl",
    ])
      expect(goalOf(name), name).toBe("min");
    for (const name of ["acc", "f1", "auroc", "reward", "bleu"]) expect(goalOf(name), name).toBe("max");
    expect(parseMetricChoices(["loss:max,acc", " f1:MIN ", "a:b"])).toEqual([
      { name: "loss", goal: "max" },
      { name: "acc" },
      { name: "f1", goal: "min" },
      { name: "a:b" },
    ]);
  });

  it("an override turns the best mark around; rows sort by a metric's mean or a parameter", async () => {
    const [backend] = backends;
    const db = await fixtureLedger(backend as (typeof backends)[number]);
    const summary = await loadSummary(db, { phase: "main", metrics: [{ name: "loss", goal: "max" }] });
    expect(summary.metrics).toEqual([{ name: "loss", goal: "max" }]);
    expect(summary.rows.map((row) => row.metrics.loss?.best)).toEqual([true, false, false, false]);
    const byAcc = sortedRows(await loadSummary(db, { phase: "main" }), "metric:acc", "desc");
    expect(byAcc.map((row) => row.metrics.acc?.mean?.toFixed(2))).toEqual(["0.90", "0.82", "0.72", "0.50"]);
    const byTag = sortedRows(summary, "param:tag", "desc");
    expect(byTag.map((row) => [row.params.tag === "plain", row.params.lr])).toEqual([
      [true, 0.01],
      [true, 0.1],
      [false, 0.01],
      [false, 0.1],
    ]);
    expect(() => sortedRows(summary, "metric:nope", "asc")).toThrow(SummaryOptionError);
  });
});

describe("summary formats", () => {
  async function mainSummary(): Promise<Summary> {
    const [backend] = backends;
    return loadSummary(await fixtureLedger(backend as (typeof backends)[number]), { phase: "main" });
  }

  it("table: aligned, one line per row, the newline shown not obeyed, best and incomplete marked", async () => {
    const text = formatSummary(await mainSummary(), "table");
    const lines = text.split("\n");
    expect(lines[0]).toMatch(/^lr\s+tag\s+n\s+acc ↑\s+acc 95% CI\s+loss ↓\s+loss 95% CI$/);
    const hostile = HOSTILE.replace("\n", "\\n");
    // Exact cells, at each column's decimals: two significant digits of its stds (acc: .028 and
    // .020, three decimals; loss: .10, two), whatever its n = 1 and std-0 rows would ask.
    const cells = (line: string) => line.split(/ {2,}/);
    expect(cells(lines[2] as string)).toEqual(["0.01", hostile, "1/3 †", "0.500 ± —", "—", "1.00 ± —", "—"]);
    expect(cells(lines[3] as string)).toEqual([
      "0.01",
      "plain",
      "3",
      "0.900 ± 0.000 *",
      "[0.900, 0.900]",
      "0.20 ± 0.00 *",
      "[0.20, 0.20]",
    ]);
    expect(cells(lines[4] as string)).toEqual([
      "0.1",
      hostile,
      "2/3 †",
      "0.720 ± 0.028",
      "[0.466, 0.974]",
      "0.60 ± — (n=1)",
      "—",
    ]);
    expect(cells(lines[5] as string)).toEqual([
      "0.1",
      "plain",
      "3",
      "0.820 ± 0.020",
      "[0.770, 0.870]",
      "0.40 ± 0.10",
      "[0.15, 0.65]",
    ]);
    expect(text).toContain("constants: epochs=5\n");
    expect(text).toContain("† fewer finished than planned");
    expect(text).not.toMatch(/NaN|undefined|null/);
  });

  it("Markdown: every row has its cells, the hostile value escaped, best bold", async () => {
    const text = formatSummary(await mainSummary(), "md");
    const rows = text.split("\n").filter((line) => line.startsWith("|"));
    expect(rows).toHaveLength(6);
    const cells = rows.map(markdownCells);
    for (const row of cells) expect(row).toHaveLength(7);
    expect(cells[0]).toEqual(["lr", "tag", "n", "acc ↑", "acc 95% CI", "loss ↓", "loss 95% CI"]);
    expect(cells[2]?.[1]).toBe(escapeMarkdown(HOSTILE));
    expect(unescapeMarkdown(cells[2]?.[1] as string)).toBe(HOSTILE.replace("\n", "<br>"));
    expect(cells[3]?.[3]).toBe("**0.900 ± 0.000**");
    expect(cells[4]?.[2]).toBe("2/3 †");
    expect(text).not.toMatch(/NaN|undefined|null/);
  });

  it("LaTeX: booktabs, every special escaped, one line per row, best bold", async () => {
    const text = formatSummary(await mainSummary(), "latex");
    const body = text.split("\n").filter((line) => line.endsWith(" \\\\"));
    expect(body).toHaveLength(5);
    for (const line of body) expect(line.split(/(?<!\\)&/)).toHaveLength(7);
    expect(text).toContain("\\begin{tabular}{llrrrrr}");
    expect(body[0]).toBe(
      "lr & tag & n & acc $\\uparrow$ & acc 95\\% CI & loss $\\downarrow$ & loss 95\\% CI \\\\",
    );
    const hostile = body[1]?.split(/(?<!\\)&/)[1]?.trim() as string;
    expect(hostile).toBe(escapeLatex(HOSTILE));
    expect(unescapeLatex(hostile)).toBe(HOSTILE.replace("\n", " "));
    // Nothing special is left bare: every \ starts one of the escapes, no { } $ % # _ ~ ^ & alone.
    expect(stripLatexEscapes(hostile)).not.toMatch(/[\\{}$%#_~^&]/);
    expect(body[2]).toContain("\\textbf{0.900 $\\pm$ 0.000}");
    expect(body[3]).toContain("2/3\\textsuperscript{\\dag}");
    expect(body[1]).toContain("0.500 $\\pm$ --");
  });

  it("CSV: the hostile value round-trips, numbers at full precision, empty not NaN", async () => {
    const text = formatSummary(await mainSummary(), "csv");
    const records = parse(text, { columns: true }) as Array<Record<string, string>>;
    expect(Object.keys(records[0] ?? {})).toEqual([
      "lr",
      "tag",
      "n",
      "planned",
      "incomplete",
      "acc_n",
      "acc_mean",
      "acc_std",
      "acc_ci95_low",
      "acc_ci95_high",
      "loss_n",
      "loss_mean",
      "loss_std",
      "loss_ci95_low",
      "loss_ci95_high",
    ]);
    expect(records[0]?.tag).toBe(HOSTILE);
    expect(records[0]).toMatchObject({
      n: "1",
      planned: "3",
      incomplete: "true",
      acc_std: "",
      acc_ci95_low: "",
    });
    expect(Number(records[2]?.acc_ci95_low)).toBeCloseTo(EXPECTED_MAIN[2]?.acc.ci?.[0] as number, 12);
    expect(records[2]).toMatchObject({ loss_n: "1", loss_mean: "0.6", loss_std: "" });
    expect(text).not.toMatch(/NaN|undefined|null/);
  });

  it("JSON: numbers as numbers, nulls where there is nothing, the hostile value intact", async () => {
    const summary = await mainSummary();
    const parsed = JSON.parse(formatSummary(summary, "json")) as Summary;
    expect(parsed).toEqual(summary);
    expect(parsed.rows[0]?.params.tag).toBe(HOSTILE);
    expect(typeof parsed.rows[3]?.metrics.acc?.mean).toBe("number");
    expect(parsed.rows[0]?.metrics.acc?.std).toBeNull();
  });
});

/** A Markdown table row's cells, split at pipes that are not backslash-escaped. */
function markdownCells(line: string): string[] {
  const cells: string[] = [];
  let cell = "";
  for (let i = 1; i < line.length; i++) {
    const char = line[i] as string;
    if (char === "\\") {
      cell += char + (line[i + 1] ?? "");
      i++;
    } else if (char === "|") {
      cells.push(cell.trim());
      cell = "";
    } else cell += char;
  }
  return cells;
}

function unescapeMarkdown(text: string): string {
  return text.replace(/\\(.)/g, "$1");
}

const LATEX_WORDS: Record<string, string> = {
  "\\textbackslash{}": "\\",
  "\\textasciitilde{}": "~",
  "\\textasciicircum{}": "^",
  "\\textless{}": "<",
  "\\textgreater{}": ">",
  "\\textbar{}": "|",
};

function unescapeLatex(text: string): string {
  return text.replace(
    /\\text[a-z]+\{\}|\\([{}$&#%_])/g,
    (match, char: string | undefined) => char ?? LATEX_WORDS[match] ?? match,
  );
}

function stripLatexEscapes(text: string): string {
  return text.replace(/\\text[a-z]+\{\}|\\[{}$&#%_]/g, "");
}
