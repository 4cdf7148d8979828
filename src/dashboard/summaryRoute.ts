import type { FastifyInstance } from "fastify";
import { HttpError } from "../http/httpError.js";
import type { Db } from "../ledger/db.js";
import {
  loadSummary,
  parseByList,
  parseMetricChoices,
  type Summary,
  SummaryOptionError,
  type SummaryRow,
  sortedRows,
} from "../results/summary.js";
import {
  formatSummary,
  metricDecimals,
  metricTexts,
  SUMMARY_FORMATS,
  type SummaryFormat,
} from "../results/summaryFormat.js";

type Query = Record<string, string | string[] | undefined>;

/** The summary as the page reads it: the JSON of `labsweep results --format json`, and each cell's text. */
export interface SummaryView extends Summary {
  /** Per row, per metric: the mean ± std and interval texts, as the terminal table writes them. */
  texts: Array<Record<string, { value: string; ci: string }>>;
}

const CONTENT_TYPES: Record<Exclude<SummaryFormat, "json">, string> = {
  csv: "text/csv; charset=utf-8",
  md: "text/markdown; charset=utf-8",
  latex: "text/x-tex; charset=utf-8",
  table: "text/plain; charset=utf-8",
};

/**
 * GET /summary: the summary table (results/summary.ts, the one `labsweep results` prints), so
 * the page and the command agree. Query: `phase`, `by` and `metric` as the command's flags,
 * `sort` (phase, n, param:NAME, metric:NAME) with `dir` (asc|desc), and `format` (json, the
 * default, for the page; csv, md, latex or table for its exports, in the page's order).
 */
export function registerSummaryRoute(api: FastifyInstance, db: Db): void {
  api.get<{ Querystring: Query }>("/summary", { config: { access: "viewer" } }, async (request, reply) => {
    const query = request.query;
    const format = (first(query.format) ?? "json") as SummaryFormat;
    if (!SUMMARY_FORMATS.includes(format))
      throw new HttpError(400, `format must be one of ${SUMMARY_FORMATS.join(", ")}`);
    const dir = first(query.dir) ?? "asc";
    if (dir !== "asc" && dir !== "desc") throw new HttpError(400, "dir must be asc or desc");
    const by = all(query.by);
    const metric = all(query.metric);
    let summary: Summary;
    let rows: SummaryRow[];
    try {
      summary = await loadSummary(db, {
        phase: first(query.phase),
        by: by.length > 0 ? parseByList(by) : undefined,
        metrics: metric.length > 0 ? parseMetricChoices(metric) : undefined,
      });
      const sort = first(query.sort);
      rows = sort === undefined ? summary.rows : sortedRows(summary, sort, dir);
    } catch (error) {
      if (error instanceof SummaryOptionError) throw new HttpError(400, error.message);
      throw error;
    }
    if (format === "json") return viewOf({ ...summary, rows });
    const text = formatSummary(summary, format, rows);
    if (format === "csv") reply.header("content-disposition", 'attachment; filename="summary.csv"');
    return reply.type(CONTENT_TYPES[format]).send(text);
  });
}

function viewOf(summary: Summary): SummaryView {
  const decimals = metricDecimals(summary);
  const texts = summary.rows.map((row) => {
    const cells: Record<string, { value: string; ci: string }> = {};
    for (const { name } of summary.metrics) {
      const stats = row.metrics[name];
      if (stats) cells[name] = metricTexts(stats, row.finished, decimals[name] ?? 0);
    }
    return cells;
  });
  return { ...summary, texts };
}

function first(value: string | string[] | undefined): string | undefined {
  const one = Array.isArray(value) ? value[0] : value;
  return one === undefined || one === "" ? undefined : one;
}

function all(value: string | string[] | undefined): string[] {
  return (Array.isArray(value) ? value : value === undefined ? [] : [value]).filter((one) => one !== "");
}
