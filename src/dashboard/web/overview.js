// Overview (progress, rate, ETA, gates) and Machines (agents, GPUs, running tasks).
import { ago, badge, count, duration, fill, h, keepFocus, paramText, show, svg } from "./util.js";

const COUNTERS = [
  ["succeeded", "Done"],
  ["running", "Running"],
  ["pending", "Pending"],
  ["failed", "Failed"],
  ["blocked", "Blocked / waiting"],
  ["cancelled", "Cancelled"],
  ["unique", "Total"],
];

/** A stacked bar of done / failed / running out of all, with the numbers in its label. */
function progressBar(counts, label) {
  const total = counts.unique || 1;
  const done = counts.succeeded + counts.failed + counts.cancelled;
  const percent = (value) => `${((100 * value) / total).toFixed(2)}%`;
  return h(
    "div",
    {
      class: "bar",
      role: "img",
      "aria-label": `${label}: ${count(counts.succeeded)} done, ${count(counts.failed)} failed, ${count(counts.running)} running of ${count(counts.unique)} (${Math.round((100 * done) / total)}% finished)`,
    },
    h("span", { class: "succeeded", style: `width:${percent(counts.succeeded)}` }),
    h("span", { class: "failed", style: `width:${percent(counts.failed)}` }),
    h("span", { class: "cancelled", style: `width:${percent(counts.cancelled)}` }),
    h("span", { class: "running", style: `width:${percent(counts.running)}` }),
  );
}

export function renderOverview(root, overview) {
  const { totals, rate, eta } = overview;
  root.setAttribute("aria-busy", "false");
  root.dataset.version = String(overview.version);
  const counters = h(
    "dl",
    { class: "counters" },
    COUNTERS.map(([key, label]) =>
      h(
        "div",
        {},
        h("dt", {}, label),
        h(
          "dd",
          { "data-count": key },
          key === "unique"
            ? count(totals[key])
            : h(
                "a",
                {
                  href: `#/tasks?state=${key}`,
                  "aria-label": `${count(totals[key])} ${label.toLowerCase()}: list them`,
                },
                count(totals[key]),
              ),
        ),
      ),
    ),
  );
  const etaText =
    eta.seconds === null
      ? "not yet known (no task has finished)"
      : eta.seconds === 0
        ? "done"
        : `about ${duration(eta.seconds)}${
            eta.basis === "durations"
              ? ` (mean task ${duration(eta.meanTaskSeconds)} on ${eta.slots} slot${eta.slots === 1 ? "" : "s"})`
              : " (from the recent rate)"
          }`;
  const facts = h(
    "div",
    { class: "facts" },
    h(
      "p",
      {},
      h("strong", {}, "Rate: "),
      h("span", { "data-rate": "" }, rate.perMinute === null ? "—" : `${show(rate.perMinute)} tasks/min`),
      ` (last ${Math.round(rate.windowSeconds / 60)} min)`,
    ),
    h("p", {}, h("strong", {}, "ETA: "), h("span", { "data-eta": "" }, etaText)),
  );
  const phases = h(
    "table",
    { class: "data" },
    h("caption", { class: "visually-hidden" }, "Progress per phase"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col" }, "Phase"),
        h("th", { scope: "col" }, "Gate"),
        ["Done", "Running", "Pending", "Failed", "Blocked", "Cancelled", "Total"].map((label) =>
          h("th", { scope: "col", class: "num" }, label),
        ),
        h("th", { scope: "col" }, "Progress"),
      ),
    ),
    h(
      "tbody",
      {},
      overview.phases.map((phase) =>
        h(
          "tr",
          { "data-phase": phase.name },
          h(
            "th",
            { scope: "row" },
            h("a", { href: `#/tasks?phase=${encodeURIComponent(phase.name)}` }, phase.name),
          ),
          h(
            "td",
            {},
            badge(phase.state === "open" ? "open" : phase.state),
            // Shown only where they change anything: most sweeps are never paused, one priority.
            phase.paused ? [" ", badge("paused")] : null,
            phase.priority ? h("span", { class: "priority" }, ` priority ${phase.priority}`) : null,
          ),
          ["succeeded", "running", "pending", "failed", "blocked", "cancelled", "unique"].map((key) =>
            h("td", { class: "num" }, count(phase[key])),
          ),
          h("td", {}, progressBar(phase, phase.name)),
        ),
      ),
    ),
  );
  const gates = overview.gates.length
    ? h(
        "div",
        {},
        h("h3", {}, "Gates holding phases"),
        h(
          "ul",
          { class: "gates" },
          overview.gates.map((gate) =>
            h(
              "li",
              {},
              h("strong", {}, gate.phase),
              " ",
              badge(gate.state),
              ": ",
              gate.reason ?? "no reason recorded",
            ),
          ),
        ),
      )
    : null;
  keepFocus(root, () =>
    fill(
      root,
      resultErrors(overview.resultErrors ?? []),
      counters,
      progressBar(totals, "All tasks"),
      facts,
      h("div", { class: "table-wrap" }, phases),
      gates,
      h("p", { class: "summary" }, `Updated ${new Date(overview.at).toLocaleTimeString()}`),
    ),
  );
}

/** Output dirs whose results file cannot be written: first on the page, as rows are waiting. */
function resultErrors(dirs) {
  if (!dirs.length) return null;
  return h(
    "div",
    { class: "error", id: "result-errors", role: "alert" },
    h("strong", {}, "Results not written to disk"),
    h(
      "ul",
      { class: "gates" },
      dirs.map((dir) =>
        h(
          "li",
          { "data-output-dir": dir.outputDir },
          h("code", {}, dir.outputDir),
          `: ${count(dir.owedRows)} row${dir.owedRows === 1 ? "" : "s"} waiting — ${dir.error}`,
        ),
      ),
    ),
    h(
      "p",
      { class: "summary" },
      "Tried again regularly (at least once a minute): fix the cause and the rows are written.",
    ),
  );
}

/** A tiny line of recent values (0–max), with the latest in its accessible name. */
function sparkline(values, max, cls, name, unit) {
  const width = 110;
  const height = 22;
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const y = (value) => (height - 1 - (Math.min(value, max) / (max || 1)) * (height - 2)).toFixed(1);
  let points = values
    .map((value, index) =>
      value === null || !Number.isFinite(value) ? null : `${(index * step).toFixed(1)},${y(value)}`,
    )
    .filter(Boolean);
  const known = values.filter((value) => value !== null && Number.isFinite(value));
  const last = known.length ? known[known.length - 1] : null;
  // One reading so far: a flat line at its level.
  if (points.length === 1) points = [`0,${y(last)}`, `${width},${y(last)}`];
  const reading = last === null ? "no reading" : `${show(last)}${unit}`;
  return h(
    "div",
    { class: "spark" },
    h(
      "span",
      { role: "img", "aria-label": `${name}: ${reading}` },
      svg(
        "svg",
        { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", "aria-hidden": "true" },
        svg("polyline", { class: cls, points: points.join(" ") }),
      ),
    ),
    h("span", { "aria-hidden": "true" }, `${cls === "util" ? "util" : "mem"} ${reading}`),
  );
}

function gpuCell(machine) {
  if (!machine.gpus.length) return "none";
  return h(
    "div",
    { class: "sparks" },
    machine.gpus.map((gpu) => {
      const readings = machine.telemetry.map(
        (reading) => reading.gpus.find((sample) => sample.index === gpu.index) ?? null,
      );
      const util = readings.map((sample) => (sample ? sample.utilizationPct : null));
      const mem = readings.map((sample) => (sample ? sample.memoryUsedMiB : null));
      const total = gpu.memoryTotalMiB || readings.find(Boolean)?.memoryTotalMiB || 1;
      return h(
        "div",
        { "data-gpu": gpu.index },
        h("div", {}, `GPU ${gpu.index} · ${gpu.name} · ${count(Math.round(total / 1024))} GiB`),
        sparkline(util, 100, "util", `GPU ${gpu.index} utilisation`, "%"),
        sparkline(mem, total, "mem", `GPU ${gpu.index} memory used`, " MiB"),
      );
    }),
  );
}

export function renderMachines(root, data) {
  const { machines, at } = data;
  if (!machines.length) {
    fill(
      root,
      h(
        "p",
        {},
        "No machine has joined yet. Start one with ",
        // Never a token in argv: other users of that machine see command lines (ps).
        h("code", {}, "labsweep agent --server URL --token-file FILE"),
        " (FILE holding the agent token, from ",
        h("code", {}, "labsweep token"),
        ").",
      ),
    );
    return;
  }
  const table = h(
    "table",
    { class: "data", id: "machine-table" },
    h("caption", { class: "visually-hidden" }, "Machines working on the sweep"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        [
          "Machine",
          "State",
          "Slots used",
          "GPUs (utilisation, memory)",
          "Running tasks",
          "Last heartbeat",
        ].map((label) => h("th", { scope: "col" }, label)),
      ),
    ),
    h(
      "tbody",
      {},
      machines.map((machine) =>
        h(
          "tr",
          { class: machine.state === "lost" ? "lost" : "", "data-machine": machine.id },
          h(
            "th",
            { scope: "row" },
            machine.name,
            h("div", { class: "summary" }, `${machine.host}${machine.kind === "local" ? " (this run)" : ""}`),
          ),
          h(
            "td",
            {},
            badge(machine.state),
            machine.state === "lost"
              ? h("div", {}, `lost: ${machine.lostReason ?? "unknown"} ${ago(machine.lostAt, at)}`)
              : null,
          ),
          h(
            "td",
            { class: "num" },
            `${machine.running.filter((task) => task.started).length} / ${machine.slots}`,
          ),
          h("td", {}, gpuCell(machine)),
          h(
            "td",
            {},
            machine.running.length
              ? h(
                  "ul",
                  { class: "gates" },
                  machine.running.map((task) =>
                    h(
                      "li",
                      {},
                      h("a", { href: `#/task/${task.taskId}` }, `task ${task.taskId}`),
                      task.gpuIds.length ? ` on GPU ${task.gpuIds.join(",")}` : "",
                      task.started ? ` · ${duration((at - task.startedAt) / 1000)} · ` : " · next up · ",
                      h("span", { class: "params" }, paramText(task.params)),
                    ),
                  ),
                )
              : "idle",
          ),
          h("td", {}, machine.kind === "local" ? "in process" : ago(machine.lastSeen, at)),
        ),
      ),
    ),
  );
  keepFocus(root, () => fill(root, h("div", { class: "table-wrap" }, table)));
}
