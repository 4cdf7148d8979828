/**
 * A summary (summary.ts) as text: an aligned table for the terminal, Markdown, LaTeX (booktabs),
 * CSV and JSON. The three for reading mark each metric's best mean (bold in Markdown and LaTeX,
 * `*` in the terminal) and flag a configuration with fewer finished seeds than planned (`†`).
 * Every cell from the sweep — parameter names and values, metric names — is escaped for its
 * format, so a value with a pipe, a newline or a `%` cannot break the table it sits in.
 */
import { stringify } from "csv-stringify/sync";
import type { ParamValue } from "../sweep/types.js";
import { formatCell } from "./csvFile.js";
import type { Goal, MetricStats, Summary, SummaryRow } from "./summary.js";

export const SUMMARY_FORMATS = ["table", "md", "latex", "csv", "json"] as const;
export type SummaryFormat = (typeof SUMMARY_FORMATS)[number];

/** The summary in `format`, its rows in `rows`' order (default: the summary's). Ends with a newline. */
export function formatSummary(summary: Summary, format: SummaryFormat, rows = summary.rows): string {
  if (format === "json") return `${JSON.stringify({ ...summary, rows }, null, 2)}\n`;
  if (format === "csv") return summaryCsv(summary, rows);
  const grid = layout(summary, rows);
  if (format === "md") return markdown(grid);
  if (format === "latex") return latex(grid);
  return plainTable(grid);
}

/** A cell before it is written in one format. */
type Cell =
  | { kind: "text"; text: string }
  | { kind: "n"; finished: number; planned: number }
  | { kind: "mean"; stats: MetricStats; rowN: number; decimals: number }
  | { kind: "ci"; stats: MetricStats; decimals: number };

interface Column {
  label: string;
  /** A metric's column: its direction is shown in the header. */
  goal?: Goal;
  ci?: boolean;
  numeric: boolean;
}

interface Grid {
  columns: Column[];
  rows: Cell[][];
  /** Lines said under the table (or above, as comments, in LaTeX). */
  notes: { constants: string; legend: string[] };
}

function layout(summary: Summary, rows: readonly SummaryRow[]): Grid {
  const columns: Column[] = [
    ...(summary.phase_column ? [{ label: "phase", numeric: false }] : []),
    ...summary.by.map((name) => ({ label: name, numeric: false })),
    { label: "n", numeric: true },
    ...summary.metrics.flatMap(({ name, goal }) => [
      { label: name, goal, numeric: true },
      { label: name, ci: true, numeric: true },
    ]),
  ];
  const decimalsOf = metricDecimals(summary, rows);
  const cells = rows.map((row): Cell[] => [
    ...(summary.phase_column ? [{ kind: "text" as const, text: row.phase }] : []),
    ...summary.by.map((name) => ({ kind: "text" as const, text: valueText(row.params[name]) })),
    { kind: "n", finished: row.finished, planned: row.planned },
    ...summary.metrics.flatMap(({ name }): Cell[] => {
      const stats = row.metrics[name] as MetricStats;
      const decimals = decimalsOf[name] ?? 0;
      return [
        { kind: "mean", stats, rowN: row.finished, decimals },
        { kind: "ci", stats, decimals },
      ];
    }),
  ]);
  const constants = Object.entries(summary.constants)
    .map(([name, value]) => `${name}=${valueText(value)}`)
    .join(", ");
  const percent = Math.round(summary.confidence * 100);
  const legend = [
    `mean ± sample std over the parameter "${summary.seed_param}"; ${percent}% CI: mean ± t·std/√n`,
  ];
  if (summary.metrics.length > 0) legend.push("* best mean of its column (↑ higher is better, ↓ lower)");
  if (rows.some((row) => row.incomplete)) legend.push("† fewer finished than planned (finished/planned)");
  return { columns, rows: cells, notes: { constants, legend } };
}

/** A parameter value as text: strings as they are, numbers as JS prints them, lists as JSON. */
function valueText(value: ParamValue | undefined): string {
  return formatCell(value);
}

/**
 * Decimals for a metric's column: two significant digits of its rows' standard deviations (the
 * uncertainty decides the precision, as in a paper; the most any row needs, so the column lines
 * up), else, where no row has a spread, four significant digits of its means.
 */
export function metricDecimals(
  summary: Summary,
  rows: readonly SummaryRow[] = summary.rows,
): Record<string, number> {
  const decimals: Record<string, number> = {};
  for (const { name } of summary.metrics) {
    const stats = rows.map((row) => row.metrics[name] as MetricStats);
    // Rounded first: a std of 0.009999999999999981 is 0.010 (three decimals), not 0.0100.
    const stds = stats.map((one) => Number((one.std ?? 0).toPrecision(2))).filter((std) => std > 0);
    const means = stats
      .map((one) => Math.abs(Number((one.mean ?? 0).toPrecision(4))))
      .filter((mean) => mean > 0);
    const most = (values: number[], digits: number) =>
      values.reduce((found, value) => Math.max(found, decimalsOf(value, digits)), 0);
    decimals[name] = stds.length > 0 ? most(stds, 2) : most(means, 4);
  }
  return decimals;
}

/** Decimals that show `digits` significant digits of `value` (> 0), at most 10. */
function decimalsOf(value: number, digits: number): number {
  return Math.min(10, Math.max(0, digits - 1 - Math.floor(Math.log10(value))));
}

/** A number with `decimals` decimals, never "-0". */
export function fixed(value: number, decimals: number): string {
  const text = value.toFixed(decimals);
  return /^-0(\.0*)?$/.test(text) ? text.slice(1) : text;
}

/** The display text of a metric's cells, for the dashboard: the same as the terminal table's. */
export function metricTexts(
  stats: MetricStats,
  rowN: number,
  decimals: number,
): { value: string; ci: string } {
  return {
    value: meanText(stats, rowN, decimals, TEXT),
    ci: ciText(stats, decimals, TEXT),
  };
}

/** How one format writes the symbols of a cell. */
interface Symbols {
  pm: string;
  dash: string;
  escape: (text: string) => string;
}

const TEXT: Symbols = { pm: "±", dash: "—", escape: (text) => text };

function meanText(stats: MetricStats, rowN: number, decimals: number, symbols: Symbols): string {
  if (stats.mean === null) return symbols.dash;
  const std = stats.std === null ? symbols.dash : fixed(stats.std, decimals);
  // A metric some finished tasks did not report says over how many it is.
  const fewer = stats.n < rowN ? ` (n=${stats.n})` : "";
  return `${fixed(stats.mean, decimals)} ${symbols.pm} ${std}${fewer}`;
}

function ciText(stats: MetricStats, decimals: number, symbols: Symbols): string {
  if (stats.ci_low === null || stats.ci_high === null) return symbols.dash;
  return `[${fixed(stats.ci_low, decimals)}, ${fixed(stats.ci_high, decimals)}]`;
}

/** Writes a cell in one format: `mark` makes a best mean stand out, `flag` an incomplete n. */
function cellText(
  cell: Cell,
  symbols: Symbols & { mark: (text: string) => string; flag: (text: string) => string },
): string {
  if (cell.kind === "text") return symbols.escape(cell.text);
  if (cell.kind === "n")
    return cell.finished < cell.planned
      ? symbols.flag(`${cell.finished}/${cell.planned}`)
      : String(cell.finished);
  if (cell.kind === "ci") return ciText(cell.stats, cell.decimals, symbols);
  const text = meanText(cell.stats, cell.rowN, cell.decimals, symbols);
  return cell.stats.best ? symbols.mark(text) : text;
}

/** Control characters shown, not obeyed: a newline in a value must not end a table's line. */
function visible(text: string): string {
  return text
    .replace(/\r\n|\n|\r/g, "\\n")
    .replace(/\t/g, " ")
    .replace(/\p{Cc}/gu, "?");
}

function headerText(column: Column, escaped: (text: string) => string, arrows: Record<Goal, string>): string {
  if (column.ci) return `${escaped(column.label)} 95% CI`;
  if (column.goal) return `${escaped(column.label)} ${arrows[column.goal]}`;
  return escaped(column.label);
}

function plainTable(grid: Grid): string {
  const symbols = {
    ...TEXT,
    escape: visible,
    mark: (text: string) => `${text} *`,
    flag: (text: string) => `${text} †`,
  };
  const header = grid.columns.map((column) => headerText(column, visible, { min: "↓", max: "↑" }));
  const body = grid.rows.map((row) => row.map((cell) => cellText(cell, symbols)));
  const widths = header.map((text, index) =>
    Math.max(width(text), ...body.map((row) => width(row[index] ?? ""))),
  );
  const line = (cells: string[]) =>
    cells
      .map((text, index) => {
        const pad = " ".repeat((widths[index] ?? 0) - width(text));
        return grid.columns[index]?.numeric ? pad + text : text + pad;
      })
      .join("  ")
      .trimEnd();
  const rule = widths.map((w) => "-".repeat(w)).join("  ");
  const notes = [
    grid.notes.constants ? `constants: ${visible(grid.notes.constants)}` : "",
    ...grid.notes.legend,
  ];
  return `${[line(header), rule, ...body.map(line), "", ...notes.filter(Boolean)].join("\n")}\n`;
}

/** Characters on screen (code points): close enough for the ± and — this table writes. */
function width(text: string): number {
  return [...text].length;
}

/** Markdown's specials in a cell: a pipe would split it, `*`/`_`/`<`… would format it. */
export function escapeMarkdown(text: string): string {
  return text.replace(/[\\`*_[\]<>|~&#]/g, "\\$&").replace(/\r\n|\n|\r/g, "<br>");
}

function markdown(grid: Grid): string {
  const symbols = {
    ...TEXT,
    escape: escapeMarkdown,
    mark: (text: string) => `**${text}**`,
    flag: (text: string) => `${text} †`,
  };
  const row = (cells: string[]) => `| ${cells.join(" | ")} |`;
  const header = grid.columns.map((column) => headerText(column, escapeMarkdown, { min: "↓", max: "↑" }));
  const align = grid.columns.map((column) => (column.numeric ? "---:" : ":---"));
  const notes = [
    grid.notes.constants ? `Constants: ${escapeMarkdown(grid.notes.constants)}.` : "",
    ...grid.notes.legend.map((line) => escapeMarkdown(line).replace(/^\\\*/, "**bold**:")),
  ].filter(Boolean);
  const body = grid.rows.map((cells) => row(cells.map((cell) => cellText(cell, symbols))));
  return `${[row(header), row(align), ...body, "", notes.join("  \n")].join("\n")}\n`;
}

const LATEX_SPECIALS: Record<string, string> = {
  "\\": "\\textbackslash{}",
  "{": "\\{",
  "}": "\\}",
  $: "\\$",
  "&": "\\&",
  "#": "\\#",
  "%": "\\%",
  _: "\\_",
  "~": "\\textasciitilde{}",
  "^": "\\textasciicircum{}",
  "<": "\\textless{}",
  ">": "\\textgreater{}",
  "|": "\\textbar{}",
};

/** LaTeX's specials in text; a line break inside a cell becomes a space (`\\` would end the row). */
export function escapeLatex(text: string): string {
  return text
    .replace(/\r\n|\n|\r/g, " ")
    .replace(/[\\{}$&#%_~^<>|]/g, (char) => LATEX_SPECIALS[char] ?? char);
}

function latex(grid: Grid): string {
  const symbols = {
    pm: "$\\pm$",
    dash: "--",
    escape: escapeLatex,
    mark: (text: string) => `\\textbf{${text}}`,
    flag: (text: string) => `${text}\\textsuperscript{\\dag}`,
  };
  const header = grid.columns.map((column) =>
    headerText(column, escapeLatex, { min: "$\\downarrow$", max: "$\\uparrow$" }).replace(
      " 95% CI",
      " 95\\% CI",
    ),
  );
  const spec = grid.columns.map((column) => (column.numeric ? "r" : "l")).join("");
  const row = (cells: string[]) => `${cells.join(" & ")} \\\\`;
  const comments = [
    "% needs \\usepackage{booktabs}",
    ...(grid.notes.constants ? [`% constants: ${grid.notes.constants.replace(/\r\n|\n|\r/g, " ")}`] : []),
    ...grid.notes.legend.map((line) => `% ${line.replace("*", "bold:").replace("†", "\\dag:")}`),
  ];
  return `${[
    ...comments,
    `\\begin{tabular}{${spec}}`,
    "\\toprule",
    row(header),
    "\\midrule",
    ...grid.rows.map((cells) => row(cells.map((cell) => cellText(cell, symbols)))),
    "\\bottomrule",
    "\\end{tabular}",
  ].join("\n")}\n`;
}

/**
 * CSV for pandas: the parameter columns, then n, planned and incomplete, then per metric
 * NAME_n, NAME_mean, NAME_std, NAME_ci95_low, NAME_ci95_high, at full precision (empty where
 * there is nothing, never NaN). A parameter named like one of those columns gets `param_`.
 */
function summaryCsv(summary: Summary, rows: readonly SummaryRow[]): string {
  const statColumns = [
    "n",
    "planned",
    "incomplete",
    ...summary.metrics.flatMap(({ name }) => STAT_FIELDS.map((field) => `${name}_${field.column}`)),
  ];
  const taken = new Set([...statColumns, ...(summary.phase_column ? ["phase"] : [])]);
  const paramHeader = summary.by.map((name) => (taken.has(name) ? `param_${name}` : name));
  const header = [...(summary.phase_column ? ["phase"] : []), ...paramHeader, ...statColumns];
  const body = rows.map((row) => [
    ...(summary.phase_column ? [row.phase] : []),
    ...summary.by.map((name) => formatCell(row.params[name])),
    row.finished,
    row.planned,
    formatCell(row.incomplete),
    ...summary.metrics.flatMap(({ name }) =>
      STAT_FIELDS.map((field) => formatCell((row.metrics[name] as MetricStats)[field.key])),
    ),
  ]);
  return stringify([header, ...body], { record_delimiter: "\n" });
}

const STAT_FIELDS = [
  { key: "n", column: "n" },
  { key: "mean", column: "mean" },
  { key: "std", column: "std" },
  { key: "ci_low", column: "ci95_low" },
  { key: "ci_high", column: "ci95_high" },
] as const;
