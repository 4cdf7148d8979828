// The summary over seeds: one row per configuration with n, mean ± std and a 95% interval per
// metric, from the server's summary (the table `labsweep results` prints), sortable by any
// column (a button in each header: click, Enter or Space), each metric's best mean in bold with
// a star, and exported in the order shown: a CSV download, Markdown or LaTeX copied.
import { compareValues } from "./curveStats.js";
import { apiUrl, fill, h, show } from "./util.js";

const table = document.getElementById("summary-table");
const note = document.getElementById("summary-note");
const csvLink = document.getElementById("summary-csv");
const copied = document.getElementById("summary-copied");
const exported = document.getElementById("summary-export");
const copyButtons = {
  md: document.getElementById("summary-md"),
  latex: document.getElementById("summary-latex"),
};

/** The summary shown, the phase it is of, and its order (null: the server's, by configuration). */
let current = null;
let phase = "";
let order = { sort: null, dir: "asc" };

/** Fetches the summary (of one phase, or all when "") and shows it in the current order. */
export async function showSummary(phaseName) {
  if (phaseName !== phase) order = { sort: null, dir: "asc" };
  phase = phaseName;
  const response = await fetch(apiUrl("/summary", { phase }), { headers: { accept: "application/json" } });
  const body = await response.json();
  if (!response.ok) {
    note.textContent = `The summary could not be read: ${body.error ?? response.status}`;
    return;
  }
  current = body;
  fetchedAt = Date.now();
  render();
}

let fetchedAt = 0;
let finishedSeen = null;

/** Fetches the summary again when tasks finished since, at most every 5 s, while it is on screen. */
export function refreshSummary(overview) {
  const { succeeded, failed, cancelled } = overview.totals;
  const finished = succeeded + failed + cancelled;
  if (!current || table.closest(".view")?.hidden) return;
  if (finishedSeen === null) finishedSeen = finished;
  if (finished === finishedSeen || Date.now() - fetchedAt < 5000) return;
  finishedSeen = finished;
  void showSummary(phase);
}

/** The columns: the phase when there are several, the grouping parameters, n, then per metric its mean and interval. */
function columns(summary) {
  return [
    ...(summary.phase_column ? [{ sort: "phase", label: "phase", cell: (row) => row.phase }] : []),
    ...summary.by.map((name) => ({
      sort: `param:${name}`,
      label: name,
      cell: (row) => show(row.params[name]),
    })),
    {
      sort: "n",
      label: "n",
      num: true,
      cell: (row) => (row.incomplete ? `${row.finished}/${row.planned} †` : String(row.finished)),
    },
    ...summary.metrics.flatMap((metric) => [
      {
        sort: `metric:${metric.name}`,
        label: metric.name,
        title: metric.goal === "min" ? "lower is better" : "higher is better",
        num: true,
        metric: metric.name,
        cell: (_row, index) => summary.texts[index]?.[metric.name]?.value ?? "—",
      },
      {
        label: `${metric.name} 95% CI`,
        num: true,
        cell: (_row, index) => summary.texts[index]?.[metric.name]?.ci ?? "—",
      },
    ]),
  ];
}

/** The rows' indexes in the shown order: the same rule as the server's `sort` (missing values last). */
function shownOrder(summary) {
  const indexes = summary.rows.map((_row, index) => index);
  if (!order.sort) return indexes;
  const value = (row) => {
    if (order.sort === "phase") return row.phase;
    if (order.sort === "n") return row.finished;
    if (order.sort.startsWith("param:")) return row.params[order.sort.slice(6)];
    return row.metrics[order.sort.slice(7)]?.mean ?? undefined;
  };
  const sign = order.dir === "desc" ? -1 : 1;
  return indexes.sort((a, b) => {
    const x = value(summary.rows[a]);
    const y = value(summary.rows[b]);
    const missing = Number(x === undefined || x === null) - Number(y === undefined || y === null);
    return missing || sign * compareValues(x, y) || a - b;
  });
}

function render() {
  const summary = current;
  const cols = columns(summary);
  fill(
    table.tHead,
    h(
      "tr",
      {},
      cols.map((column) => {
        if (!column.sort) return h("th", { scope: "col", class: column.num ? "num" : null }, column.label);
        const sorted = order.sort === column.sort;
        const ariaSort = sorted ? (order.dir === "asc" ? "ascending" : "descending") : "none";
        const button = h(
          "button",
          { type: "button", class: "sort", "data-sort": column.sort, title: column.title ?? null },
          column.label,
        );
        button.addEventListener("click", () => {
          order = { sort: column.sort, dir: sorted && order.dir === "asc" ? "desc" : "asc" };
          render();
          table.tHead.querySelector(`button[data-sort="${CSS.escape(column.sort)}"]`)?.focus();
        });
        return h("th", { scope: "col", class: column.num ? "num" : null, "aria-sort": ariaSort }, button);
      }),
    ),
  );
  fill(
    table.tBodies[0],
    shownOrder(summary).map((index) => {
      const row = summary.rows[index];
      return h(
        "tr",
        { class: row.incomplete ? "incomplete" : null },
        cols.map((column) => {
          const best = column.metric !== undefined && row.metrics[column.metric]?.best;
          return h(
            "td",
            { class: [column.num ? "num" : "", best ? "best" : ""].join(" ").trim() || null },
            column.cell(row, index),
            best
              ? [
                  h("span", { class: "mark", "aria-hidden": "true" }, " ★"),
                  h("span", { class: "visually-hidden" }, " (best)"),
                ]
              : null,
          );
        }),
      );
    }),
  );
  const goals = summary.metrics.map(
    (metric) => `${metric.name}: ${metric.goal === "min" ? "lower" : "higher"} is better`,
  );
  const constants = Object.entries(summary.constants).map(([name, value]) => `${name}=${show(value)}`);
  note.textContent = summary.rows.length
    ? `${summary.rows.length} configurations; mean ± sample std over "${summary.seed_param}", 95% t interval. Bold ★: best mean per column${goals.length ? ` (${goals.join("; ")})` : ""}.${summary.rows.some((row) => row.incomplete) ? " †: fewer finished than planned." : ""}${constants.length ? ` Constants: ${constants.join(", ")}.` : ""}`
    : "No tasks yet.";
  csvLink.href = exportUrl("csv");
}

/** The summary in `format`, in the order shown. */
function exportUrl(format) {
  return apiUrl("/summary", { phase, format, sort: order.sort, dir: order.sort ? order.dir : undefined });
}

/** Copies the table as Markdown or LaTeX; where the clipboard is refused, the text is shown to copy by hand. */
async function copyAs(format) {
  const response = await fetch(exportUrl(format));
  const text = await response.text();
  exported.value = text;
  exported.hidden = false;
  const name = format === "md" ? "Markdown" : "LaTeX";
  try {
    await navigator.clipboard.writeText(text);
    copied.textContent = `Copied as ${name}.`;
  } catch {
    // No clipboard here (a page served over plain HTTP to another machine): select it to copy.
    exported.select();
    copied.textContent = `The ${name} is below, selected: copy it with Ctrl-C.`;
  }
}

for (const [format, button] of Object.entries(copyButtons))
  button.addEventListener("click", () => void copyAs(format));
