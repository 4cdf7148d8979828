// Results: a plot builder (x = a parameter, y = a metric, one line per value of another
// parameter, optional small multiples) drawing mean ± std over everything not chosen (seeds),
// aggregated by the server; CSV export of the view; the summary over seeds (summaryTable.js);
// and the completed results as a table.
import { refreshCurves, showCurves, showMode } from "./resultCurves.js";
import { refreshSummary, showSummary } from "./summaryTable.js";
import { apiUrl, count, fill, getJson, h, PALETTE, show, withAlpha } from "./util.js";

const form = document.getElementById("plot-form");
const plots = document.getElementById("plots");
const summary = document.getElementById("plot-summary");
const csvLink = document.getElementById("plot-csv");
const resultsTable = document.getElementById("results-table");
const resultPager = {
  first: document.getElementById("results-first"),
  next: document.getElementById("results-next"),
};
let fields = null;
/** The fetch of the fields in flight, shared by navigations that overlap it; each visit after
 * it fetches again, so metrics that appeared since are offered. */
let fieldsLoading = null;
/** Counts visits: a visit whose fields arrive after a newer one started leaves the view alone
 * (clicking Results and then Curves at once must not end on the final-metrics plot). */
let visits = 0;
let charts = [];
let resultsCursor = { current: undefined, next: null };

function loadFields() {
  fieldsLoading ??= fetchFields().finally(() => {
    fieldsLoading = null;
  });
  return fieldsLoading;
}

async function fetchFields() {
  fields = await getJson("/fields");
  const options = (select, names, keep = 0) => {
    while (select.options.length > keep) select.remove(keep);
    for (const name of names) select.append(h("option", {}, name));
  };
  const params = fields.params.map((param) => param.name);
  options(form.elements.x, params);
  options(form.elements.y, fields.metrics);
  options(form.elements.series, params, 1);
  options(form.elements.facet, params, 1);
  options(form.elements.phase, fields.phases, 1);
  return fields;
}

/** The plot's query from the address (#/results?x=width&y=acc&series=poison), with defaults. */
function plotQuery(query) {
  // Seeds are what gets averaged over: never a default axis or line.
  const varying = fields.params
    .filter((param) => param.varies && !/seed/i.test(param.name))
    .map((param) => param.name);
  const x = query.get("x") ?? varying[0] ?? fields.params[0]?.name;
  return {
    x,
    y: query.get("y") ?? fields.metrics[0],
    series: query.get("series") ?? varying.find((name) => name !== x) ?? "",
    facet: query.get("facet") ?? "",
    phase: query.get("phase") ?? "",
    logx: query.get("logx") === "1",
  };
}

export async function showResults(query) {
  const mine = ++visits;
  await loadFields();
  if (mine !== visits) return;
  const curves = query.get("mode") === "curves";
  showMode(curves);
  if (curves) await showCurves(query, fields.phases);
  else if (!fields.metrics.length) {
    summary.textContent = "No results yet: plots appear once tasks have succeeded with metrics.";
    fill(plots);
  } else {
    const plot = plotQuery(query);
    for (const name of ["x", "y", "series", "facet", "phase"]) form.elements[name].value = plot[name];
    form.elements.logx.checked = plot.logx;
    await draw(plot);
  }
  resultsCursor = { current: undefined, next: null, stack: [] };
  await Promise.all([loadResults(), showSummary(form.elements.phase.value)]);
}

let shown = null;
let drawing = false;

let succeeded = null;

/** Redraws the shown plot when results arrived since, at most every 5 s. */
export function refreshResults(overview) {
  refreshCurves();
  refreshSummary(overview);
  const now = overview.totals.succeeded;
  if (succeeded === null) succeeded = now;
  if (!shown || drawing || form.hidden || now === succeeded || Date.now() - shown.at < 5000) return;
  succeeded = now;
  void draw(shown.plot);
}

async function draw(plot) {
  drawing = true;
  try {
    await drawNow(plot);
  } finally {
    drawing = false;
    shown = { plot, at: Date.now() };
  }
}

async function drawNow(plot) {
  const params = { x: plot.x, y: plot.y, series: plot.series, facet: plot.facet, phase: plot.phase };
  csvLink.href = apiUrl("/plot.csv", params);
  plots.setAttribute("aria-busy", "true");
  const data = await getJson("/plot", params);
  for (const chart of charts) chart.destroy();
  charts = [];
  fill(plots);
  const groups = data.facets.reduce(
    (sum, facet) => sum + facet.series.reduce((n, series) => n + series.points.length, 0),
    0,
  );
  summary.textContent = `${count(data.used)} results in ${count(groups)} points: mean ± standard deviation over every parameter not chosen (such as the seed).`;
  for (const facet of data.facets) plots.append(figure(data, facet, plot.logx));
  plots.setAttribute("aria-busy", "false");
}

function figure(data, facet, logx) {
  const { query } = data;
  const xsRaw = [];
  const seen = new Set();
  for (const series of facet.series)
    for (const point of series.points) {
      const key = JSON.stringify(point.x);
      if (!seen.has(key)) {
        seen.add(key);
        xsRaw.push(point.x);
      }
    }
  xsRaw.sort((a, b) =>
    typeof a === "number" && typeof b === "number"
      ? a - b
      : String(a).localeCompare(String(b), undefined, { numeric: true }),
  );
  const numeric = data.numericX;
  const useLog = logx && numeric && xsRaw.every((x) => x > 0);
  const xs = numeric ? xsRaw : xsRaw.map((_, index) => index);
  const columns = [xs];
  const series = [
    {
      label: query.x,
      value: (_u, value) => (value === null ? "" : numeric ? show(value) : show(xsRaw[value])),
    },
  ];
  const bands = [];
  let maxStd = 0;
  facet.series.forEach((line, index) => {
    const color = PALETTE[index % PALETTE.length];
    const byX = new Map(line.points.map((point) => [JSON.stringify(point.x), point]));
    const at = (x) => byX.get(JSON.stringify(x)) ?? null;
    const mean = xsRaw.map((x) => at(x)?.mean ?? null);
    const upper = xsRaw.map((x) => (at(x) ? at(x).mean + at(x).std : null));
    const lower = xsRaw.map((x) => (at(x) ? at(x).mean - at(x).std : null));
    for (const point of line.points) maxStd = Math.max(maxStd, point.std);
    const label = query.series ? `${query.series}=${show(line.series)}` : query.y;
    const base = series.length;
    columns.push(mean, upper, lower);
    series.push(
      { label, stroke: color, width: 2, spanGaps: true, points: { show: true, size: 5 } },
      {
        label: `${label} + std`,
        stroke: withAlpha(color, 0),
        width: 0,
        spanGaps: true,
        points: { show: false },
      },
      {
        label: `${label} − std`,
        stroke: withAlpha(color, 0),
        width: 0,
        spanGaps: true,
        points: { show: false },
      },
    );
    bands.push({ series: [base + 1, base + 2], fill: withAlpha(color, 0.2) });
  });
  const title = query.facet ? `${query.facet} = ${show(facet.facet)}` : `${query.y} by ${query.x}`;
  const holder = h("div", { class: "chart" });
  const element = h(
    "figure",
    {
      "data-facet": show(facet.facet),
      "data-series": String(facet.series.length),
      "data-bands": String(bands.length),
      "data-max-std": String(maxStd),
    },
    h("figcaption", {}, title),
    holder,
    dataTable(query, facet),
  );
  const make = () => {
    const width = Math.max(320, (holder.clientWidth || plots.clientWidth || 600) - 4);
    const dark = window.matchMedia("(prefers-color-scheme: dark)").matches;
    const grid = { stroke: dark ? "#30363d" : "#e5e7eb" };
    const axisColor = dark ? "#e6edf3" : "#1b1f24";
    const chart = new window.uPlot(
      {
        width,
        height: 280,
        series,
        bands,
        scales: { x: { time: false, distr: useLog ? 3 : 1 } },
        axes: [
          {
            label: query.x,
            stroke: axisColor,
            grid,
            ...(numeric
              ? {}
              : {
                  values: (_u, splits) =>
                    splits.map((value) => (Number.isInteger(value) ? show(xsRaw[value] ?? "") : "")),
                }),
          },
          { label: `${query.y} (mean ± std)`, stroke: axisColor, grid },
        ],
        legend: { live: true },
      },
      columns,
      holder,
    );
    // The band edges are drawing aids: keep them out of the legend.
    chart.root.querySelectorAll(".u-legend .u-series").forEach((row, index) => {
      if (index > 0 && (index - 1) % 3 !== 0) row.style.display = "none";
    });
    charts.push(chart);
  };
  requestAnimationFrame(make);
  return element;
}

/** The figure's numbers as a table, for screen readers and for reading exact values. */
function dataTable(query, facet) {
  return h(
    "details",
    {},
    h("summary", {}, "Data table"),
    h(
      "table",
      { class: "data" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          [query.series || "series", query.x, "n", "mean", "std"].map((label) =>
            h("th", { scope: "col" }, label),
          ),
        ),
      ),
      h(
        "tbody",
        {},
        facet.series.flatMap((line) =>
          line.points.map((point) =>
            h(
              "tr",
              {},
              h("td", {}, show(line.series) || "—"),
              h("td", {}, show(point.x)),
              h("td", { class: "num" }, String(point.n)),
              h("td", { class: "num" }, show(point.mean)),
              h("td", { class: "num" }, show(point.std)),
            ),
          ),
        ),
      ),
    ),
  );
}

async function loadResults() {
  const phase = form.elements.phase.value;
  const page = await getJson("/results", { phase, after: resultsCursor.current, limit: 50 });
  resultsCursor.next = page.next;
  fill(
    resultsTable.tHead,
    h(
      "tr",
      {},
      h("th", { scope: "col", class: "num" }, "Task"),
      h("th", { scope: "col" }, "Phase"),
      page.params.map((name) => h("th", { scope: "col" }, name)),
      page.metrics.map((name) => h("th", { scope: "col", class: "num" }, name)),
    ),
  );
  fill(
    resultsTable.tBodies[0],
    page.rows.map((row) =>
      h(
        "tr",
        {},
        h("td", { class: "num" }, h("a", { href: `#/task/${row.id}` }, String(row.id))),
        h("td", {}, row.phase),
        page.params.map((name) => h("td", {}, show(row.params[name]))),
        page.metrics.map((name) => h("td", { class: "num" }, show(row.metrics[name]))),
      ),
    ),
  );
  resultPager.first.disabled = resultsCursor.current === undefined;
  resultPager.next.disabled = !page.next;
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const query = new URLSearchParams();
  for (const name of ["x", "y", "series", "facet", "phase"])
    if (form.elements[name].value) query.set(name, form.elements[name].value);
  if (form.elements.logx.checked) query.set("logx", "1");
  location.hash = `#/results?${query}`;
});
for (const name of ["x", "y", "series", "facet", "phase", "logx"])
  form.elements[name].addEventListener("change", () => form.requestSubmit());
resultPager.next.addEventListener("click", () => {
  if (!resultsCursor.next) return;
  resultsCursor.current = resultsCursor.next;
  void loadResults();
});
resultPager.first.addEventListener("click", () => {
  resultsCursor.current = undefined;
  void loadResults();
});
window.addEventListener("resize", () => {
  for (const chart of charts) {
    const width = Math.max(320, chart.root.parentElement.clientWidth - 4);
    chart.setSize({ width, height: 280 });
  }
});
