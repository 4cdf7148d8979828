// A metric drawn against step with uPlot, for the task page's curves and the Results view's
// curves mode: the same axes, colours and light/dark reading as the Results plot.
import { show } from "./util.js";

const charts = new Set();

/** Integer step ticks: a step is a whole number, so the axis never reads 0.5. */
const STEP_INCREMENTS = [1, 2, 5]
  .flatMap((m) => [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8].map((p) => m * p))
  .sort((a, b) => a - b);

/** A name cut to fit an axis or a legend (the figure's caption shows it whole). */
export function short(name, most = 48) {
  return name.length > most ? `${name.slice(0, most - 1)}…` : name;
}

/** Axis and grid colours for the page's current colour scheme. */
export function chartColors() {
  const dark = window.matchMedia("(prefers-color-scheme: dark)").matches;
  return { axis: dark ? "#e6edf3" : "#1b1f24", grid: { stroke: dark ? "#30363d" : "#e5e7eb" } };
}

/**
 * Draws `columns` (steps first) with `series` (uPlot's, the x series first) into `holder`;
 * `markers` are vertical dashed lines at steps, each with a short label (a later attempt taking
 * over). Returns the uPlot, kept at the holder's width on resize until `destroyChart`.
 */
export function curveChart(holder, { columns, series, bands = [], yLabel, height = 220, markers = [] }) {
  const width = Math.max(280, (holder.clientWidth || holder.parentElement?.clientWidth || 560) - 4);
  const colors = chartColors();
  const chart = new window.uPlot(
    {
      width,
      height,
      series: [{ label: "step", value: (_u, value) => (value === null ? "" : show(value)) }, ...series],
      bands,
      scales: { x: { time: false } },
      axes: [
        { label: "step", stroke: colors.axis, grid: colors.grid, incrs: STEP_INCREMENTS },
        { label: short(yLabel, 28), stroke: colors.axis, grid: colors.grid },
      ],
      legend: { live: true },
      hooks: { draw: [(u) => drawMarkers(u, markers, colors.axis)] },
    },
    columns,
    holder,
  );
  charts.add(chart);
  return chart;
}

export function destroyChart(chart) {
  charts.delete(chart);
  chart.destroy();
}

function drawMarkers(u, markers, color) {
  if (!markers.length) return;
  const { ctx } = u;
  const { top, height } = u.bbox;
  ctx.save();
  ctx.strokeStyle = color;
  ctx.fillStyle = color;
  ctx.setLineDash([4, 4]);
  ctx.lineWidth = window.devicePixelRatio || 1;
  ctx.font = `${11 * (window.devicePixelRatio || 1)}px system-ui, sans-serif`;
  for (const marker of markers) {
    const x = Math.round(u.valToPos(marker.step, "x", true));
    ctx.beginPath();
    ctx.moveTo(x, top);
    ctx.lineTo(x, top + height);
    ctx.stroke();
    ctx.fillText(marker.label, x + 4, top + 12 * (window.devicePixelRatio || 1));
  }
  ctx.restore();
}

/** Sets a chart's width to its holder's (after the layout around it changed). */
export function fitWidth(chart) {
  const parent = chart.root.parentElement;
  if (!parent?.isConnected) return;
  const width = Math.max(280, parent.clientWidth - 4);
  if (width !== chart.width) chart.setSize({ width, height: chart.height });
}

window.addEventListener("resize", () => {
  for (const chart of charts) fitWidth(chart);
});
