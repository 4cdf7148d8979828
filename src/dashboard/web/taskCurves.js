// A task's page, its curves: every series the task reported (GET /api/v1/tasks/ID/metrics),
// metric against step, kept up to date while the task runs. Up to SMALL_MULTIPLES metrics get
// one small chart each; more get one chart and a picker. When several attempts reported, each
// attempt is its own line and a dashed marker shows where a later one took over.
import { curveChart, destroyChart, fitWidth, short } from "./curveChart.js";
import { splitByAttempt } from "./curveStats.js";
import { fill, getApiJson, getJson, h, PALETTE, show } from "./util.js";

/** Metrics drawn side by side; past it, one chart with a picker. */
const SMALL_MULTIPLES = 6;
/** Poll while the task runs and the page is visible, until the event stream announces points. */
const POLL_MS = 3000;
/**
 * Once the stream announces points (or while the task waits to start), the poll only notices
 * the task starting or ending: its last points come before its end is recorded.
 */
const SLOW_POLL_MS = 15_000;

/** The task whose curves are shown, with its timer and charts; null when no task page is open. */
let live = null;
/** Whether this server's event stream announces points (seen once): then polls go slow. */
let announces = false;

/** The curves section for `task` (a dashboard task detail); it fills itself and follows the task. */
export function taskCurves(task) {
  stopCurves();
  const body = h("div", { id: "task-curves-body" }, h("p", {}, "Loading…"));
  const status = h("p", { class: "summary", role: "status" });
  live = {
    id: task.id,
    state: task.state,
    body,
    status,
    timer: null,
    fetching: false,
    again: false,
    figures: new Map(),
    picked: null,
  };
  const state = live;
  // Filled once the section is in the page, so the charts get their width.
  queueMicrotask(() => void refresh(state).then(() => schedule(state)));
  return h(
    "section",
    { id: "task-curves", "aria-labelledby": "curves-heading" },
    h("h3", { id: "curves-heading" }, "Curves"),
    status,
    body,
  );
}

/** The event stream's `points` announcement: the named tasks got new points. */
export function pointsAnnounced(taskIds) {
  announces = true;
  if (live && !document.hidden && Array.isArray(taskIds) && taskIds.includes(live.id)) void refresh(live);
}

export function stopCurves() {
  if (!live) return;
  clearTimeout(live.timer);
  for (const figure of live.figures.values()) destroyChart(figure.chart);
  live = null;
}

window.addEventListener("hashchange", () => {
  if (live && location.hash.replace(/^#\/?/, "").split("?")[0] !== `task/${live.id}`) stopCurves();
});
document.addEventListener("visibilitychange", () => {
  if (live && !document.hidden && following(live)) void tick(live);
});

function following(state) {
  return state.state === "running" || state.state === "pending";
}

function schedule(state) {
  clearTimeout(state.timer);
  if (state !== live || !following(state)) return;
  const wait = state.state === "running" && !announces ? POLL_MS : SLOW_POLL_MS;
  state.timer = setTimeout(() => void tick(state), wait);
}

async function tick(state) {
  if (state !== live) return;
  clearTimeout(state.timer);
  // A hidden page polls nothing; becoming visible again resumes (visibilitychange).
  if (document.hidden) return;
  try {
    state.state = (await getJson(`/tasks/${state.id}`)).state;
  } catch {
    // The next tick asks again; the curves below say what went wrong with their own fetch.
  }
  await refresh(state);
  schedule(state);
}

/** Fetches the series and redraws; one fetch at a time, one more if asked meanwhile. */
async function refresh(state) {
  if (state !== live) return;
  if (state.fetching) {
    state.again = true;
    return;
  }
  state.fetching = true;
  try {
    const data = await getApiJson(`/tasks/${state.id}/metrics`);
    if (state === live) {
      state.status.textContent = "";
      render(state, data.series ?? {});
    }
  } catch (error) {
    // The curves drawn so far stay: a coordinator away for a moment does not blank them.
    if (state === live) state.status.textContent = `Curves not updated: ${error.message}`;
  } finally {
    state.fetching = false;
  }
  if (state.again) {
    state.again = false;
    await refresh(state);
  }
}

function render(state, series) {
  const names = Object.keys(series).sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  if (!names.length) {
    for (const figure of state.figures.values()) destroyChart(figure.chart);
    state.figures.clear();
    fill(
      state.body,
      h(
        "p",
        { class: "summary" },
        following(state)
          ? "No points reported yet. A task reports them with labsweep.report(step, …) or lines in $LABSWEEP_EVENTS_FILE."
          : "This task reported no curves.",
      ),
    );
    return;
  }
  if (names.length > SMALL_MULTIPLES) {
    if (!names.includes(state.picked)) state.picked = names[0];
    ensurePicker(state, names);
    drawAll(state, { [state.picked]: series[state.picked] });
  } else {
    if (state.picker) state.grid = null;
    state.picker = null;
    drawAll(state, series);
  }
}

/** A metric picker above one chart, for tasks with many metrics; kept (with its focus) across updates. */
function ensurePicker(state, names) {
  if (!state.picker) {
    const select = h("select", { id: "curve-metric" });
    select.addEventListener("change", () => {
      state.picked = select.value;
      void refresh(state);
    });
    state.picker = select;
    state.grid = null;
  }
  const select = state.picker;
  const current = [...select.options].map((option) => option.value);
  if (current.join("\u0000") !== names.join("\u0000"))
    fill(
      select,
      names.map((name) => h("option", { value: name, selected: name === state.picked }, name)),
    );
  select.value = state.picked;
}

/** Draws each named series in its own figure: updated in place when its shape is unchanged. */
function drawAll(state, series) {
  let grid = state.grid;
  if (!grid?.isConnected) {
    grid = h("div", { class: "plots curves" });
    state.grid = grid;
    for (const figure of state.figures.values()) destroyChart(figure.chart);
    state.figures.clear();
    fill(
      state.body,
      state.picker
        ? h(
            "div",
            { class: "filters" },
            h("div", { class: "field" }, h("label", { for: "curve-metric" }, "Metric"), state.picker),
          )
        : null,
      grid,
    );
  }
  for (const [name, figure] of state.figures)
    if (!(name in series)) {
      destroyChart(figure.chart);
      figure.element.remove();
      state.figures.delete(name);
    }
  for (const [name, one] of Object.entries(series)) drawOne(state, grid, name, one);
  // A chart drawn before its neighbours took the whole row: fit each to its cell now.
  for (const { chart } of state.figures.values()) fitWidth(chart);
}

function drawOne(state, grid, name, one) {
  const split = splitByAttempt(one);
  const shape = split.lines.map((line) => line.attempt).join(",");
  const columns = [split.steps, ...split.lines.map((line) => line.values)];
  const last = one.values.at(-1);
  const label = `${name}: ${one.steps.length} points, step ${show(one.steps[0])} to ${show(one.steps.at(-1))}, last value ${show(last)}`;
  const note = split.takeovers
    .map((t) => `attempt ${t.attempt} took over at step ${show(t.step)}`)
    .join("; ");
  const markers = split.takeovers.map((t) => ({ step: t.step, label: `attempt ${t.attempt}` }));
  const existing = state.figures.get(name);
  if (existing && existing.shape === shape && existing.element.isConnected) {
    // The chart's draw hook reads this array: a takeover step that moved is drawn where it is now.
    existing.markers.splice(0, existing.markers.length, ...markers);
    existing.chart.setData(columns);
    setFacts(existing.element, one, split, label, note);
    return;
  }
  if (existing) {
    destroyChart(existing.chart);
    existing.element.remove();
  }
  const holder = h("div", { class: "chart", role: "img", "aria-label": label });
  const element = h(
    "figure",
    { "data-metric": name },
    h("figcaption", {}, name),
    holder,
    h("p", { class: "summary curve-note" }),
  );
  grid.append(element);
  setFacts(element, one, split, label, note);
  const several = split.lines.length > 1;
  const chart = curveChart(holder, {
    columns,
    yLabel: name,
    series: split.lines.map((line, index) => ({
      label: several ? `attempt ${line.attempt}` : short(name),
      stroke: PALETTE[index % PALETTE.length],
      width: 2,
      spanGaps: true,
      points: { show: one.steps.length <= 60, size: 4 },
    })),
    markers,
  });
  state.figures.set(name, { element, chart, shape, markers });
}

/** The figure's facts as text and data attributes: what a screen reader (and a test) reads. */
function setFacts(element, one, split, label, note) {
  element.dataset.points = String(one.steps.length);
  element.dataset.attempts = String(split.lines.length);
  element.querySelector(".chart")?.setAttribute("aria-label", label);
  const text = element.querySelector(".curve-note");
  if (text) text.textContent = note ? `${label}. ${note[0].toUpperCase()}${note.slice(1)}.` : `${label}.`;
}
