// Results, curves mode: one metric against step across tasks (GET /api/v1/metrics/NAME/series),
// one line per value of a chosen parameter, mean ± std over every other parameter (seeds) at
// each step, aggregated here in the browser (curveStats.js) as the final-metrics plot is on the
// server. The address keeps the view: #/results?mode=curves&metric=loss&group=lr&phase=grid.
import { curveChart, destroyChart, short } from "./curveChart.js";
import { aggregateCurves, varyingParams } from "./curveStats.js";
import { count, fill, getApiJson, h, PALETTE, show, withAlpha } from "./util.js";

const view = document.getElementById("curves-view");
const form = document.getElementById("curves-form");
const summary = document.getElementById("curves-summary");
const area = document.getElementById("curves");
/** The final-metrics plot's parts, hidden while curves are shown. */
const FINAL_PARTS = ["plot-form", "plot-summary", "plots"].map((id) => document.getElementById(id));
/** Redraw a shown view on ledger changes at most this often: a full read is up to 500 series. */
const REFRESH_MS = 15_000;

let charts = [];
let shown = null;
/** Counts draws: an answer that arrives after a newer request started is dropped. */
let generation = 0;

/** Shows the curves parts (true) or the final-metrics plot's (false), and ticks the mode's radio. */
export function showMode(curves) {
  view.hidden = !curves;
  for (const part of FINAL_PARTS) part.hidden = curves;
  for (const radio of document.querySelectorAll('input[name="results-mode"]'))
    radio.checked = radio.value === (curves ? "curves" : "final");
  if (!curves) shown = null;
}

/** Draws the view the address asks for; `phases` are the sweep's, for the phase picker. */
export async function showCurves(query, phases) {
  const mine = ++generation;
  const phaseSelect = form.elements.phase;
  if (phaseSelect.options.length !== phases.length + 1) options(phaseSelect, phases, 1);
  const phase = phases.includes(query.get("phase")) ? query.get("phase") : "";
  phaseSelect.value = phase;
  area.setAttribute("aria-busy", "true");
  try {
    const { names } = await getApiJson("/metrics", { phase });
    if (mine !== generation) return;
    options(form.elements.metric, names);
    if (!names.length) {
      clear();
      summary.textContent = "No curves yet: they appear once tasks report points (labsweep.report).";
      return;
    }
    const metric = names.includes(query.get("metric")) ? query.get("metric") : names[0];
    form.elements.metric.value = metric;
    const data = await getApiJson(`/metrics/${encodeURIComponent(metric)}/series`, { phase });
    if (mine !== generation) return;
    const params = varyingParams(data.tasks);
    options(form.elements.group, params, 1);
    // Seeds are what gets averaged over: never the default line.
    const group = params.includes(query.get("group"))
      ? query.get("group")
      : query.get("group") === ""
        ? ""
        : (params.find((name) => !/seed/i.test(name)) ?? "");
    form.elements.group.value = group;
    draw(data, metric, group);
    shown = { query, phases, at: Date.now() };
  } catch (error) {
    if (mine !== generation) return;
    clear();
    summary.textContent = `Curves: ${error.message}`;
  } finally {
    if (mine === generation) area.setAttribute("aria-busy", "false");
  }
}

/** Redraws the shown curves after the ledger changed, at most every REFRESH_MS. */
export function refreshCurves() {
  if (!shown || view.hidden || Date.now() - shown.at < REFRESH_MS) return;
  shown.at = Date.now();
  void showCurves(shown.query, shown.phases);
}

function options(select, names, keep = 0) {
  while (select.options.length > keep) select.remove(keep);
  for (const name of names) select.append(h("option", { value: name }, name));
}

function clear() {
  for (const chart of charts) destroyChart(chart);
  charts = [];
  fill(area);
}

function draw(data, metric, group) {
  const { steps, lines } = aggregateCurves(data.tasks, group);
  const points = data.tasks.reduce((sum, task) => sum + task.steps.length, 0);
  summary.textContent =
    `${count(data.tasks.length)} tasks' series of ${metric} (${count(points)} points) in ${count(lines.length)} ` +
    `${lines.length === 1 ? "line" : "lines"}: mean ± standard deviation at each step over every parameter not chosen ` +
    "(such as the seed); a step only some tasks reached is averaged over those (n in the legend)." +
    (data.truncated
      ? ` Only the first ${count(data.tasks.length)} tasks (by id) are shown: more have this metric.`
      : "");
  const columns = [steps];
  const series = [];
  const bands = [];
  lines.forEach((line, index) => {
    const color = PALETTE[index % PALETTE.length];
    const label = short(group ? `${group}=${show(line.value)}` : metric);
    const edge = (sign) => line.mean.map((mean, i) => (mean === null ? null : mean + sign * line.std[i]));
    const base = series.length + 1;
    columns.push(line.mean, edge(1), edge(-1));
    const hidden = { stroke: withAlpha(color, 0), width: 0, spanGaps: true, points: { show: false } };
    series.push(
      {
        label: `${label} (${line.tasks} ${line.tasks === 1 ? "task" : "tasks"})`,
        stroke: color,
        width: 2,
        spanGaps: true,
        points: { show: steps.length <= 60, size: 4 },
        value: (_u, value, _s, i) =>
          value === null || value === undefined || i === null
            ? "—"
            : `${show(value)} ± ${show(line.std[i])} (n=${line.n[i]})`,
      },
      { ...hidden, label: `${label} + std` },
      { ...hidden, label: `${label} − std` },
    );
    bands.push({ series: [base + 1, base + 2], fill: withAlpha(color, 0.2) });
  });
  clear();
  const holder = h("div", {
    class: "chart",
    role: "img",
    "aria-label": `${metric} by step, ${lines.length} ${lines.length === 1 ? "line" : "lines"}; the data table below has the numbers`,
  });
  const figure = h(
    "figure",
    {
      "data-lines": String(lines.length),
      "data-bands": String(bands.length),
      "data-tasks": String(data.tasks.length),
      "data-truncated": String(Boolean(data.truncated)),
    },
    h("figcaption", {}, `${metric} by step${group ? `, one line per ${group}` : ""}`),
    holder,
    linesTable(metric, group, steps, lines),
  );
  area.append(figure);
  requestAnimationFrame(() => {
    if (!figure.isConnected) return;
    const chart = curveChart(holder, {
      columns,
      series,
      bands,
      yLabel: `${short(metric, 14)} (mean ± std)`,
      height: 320,
    });
    // The band edges are drawing aids: keep them out of the legend.
    chart.root.querySelectorAll(".u-legend .u-series").forEach((row, index) => {
      if (index > 0 && (index - 1) % 3 !== 0) row.style.display = "none";
    });
    charts.push(chart);
  });
}

/** Each line's last step with its numbers, for screen readers and for reading exact values. */
function linesTable(metric, group, steps, lines) {
  const header = [group || "line", "tasks", "steps", "last step", `${metric} mean`, "std", "n"];
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
          header.map((label) => h("th", { scope: "col" }, label)),
        ),
      ),
      h(
        "tbody",
        {},
        lines.map((line) => {
          const last = line.mean.findLastIndex((mean) => mean !== null);
          const reached = line.n.filter((n) => n !== null).length;
          return h(
            "tr",
            {},
            h("td", {}, group ? show(line.value) : metric),
            h("td", { class: "num" }, String(line.tasks)),
            h("td", { class: "num" }, String(reached)),
            h("td", { class: "num" }, last < 0 ? "—" : show(steps[last])),
            h("td", { class: "num" }, last < 0 ? "—" : show(line.mean[last])),
            h("td", { class: "num" }, last < 0 ? "—" : show(line.std[last])),
            h("td", { class: "num" }, last < 0 ? "—" : String(line.n[last])),
          );
        }),
      ),
    ),
  );
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const query = new URLSearchParams({ mode: "curves" });
  query.set("metric", form.elements.metric.value);
  query.set("group", form.elements.group.value);
  if (form.elements.phase.value) query.set("phase", form.elements.phase.value);
  location.hash = `#/results?${query}`;
});
for (const name of ["metric", "group", "phase"])
  form.elements[name].addEventListener("change", () => form.requestSubmit());
for (const radio of document.querySelectorAll('input[name="results-mode"]'))
  radio.addEventListener("change", () => {
    if (!radio.checked) return;
    location.hash = radio.value === "curves" ? "#/results?mode=curves" : "#/results";
  });
