// The dashboard's entry: a hash router over four views and one server-sent event stream that
// pushes the overview and the machines whenever they change. No page ever reloads.
import { renderAllocation } from "./allocation.js";
import { renderMachines, renderOverview } from "./overview.js";
import { refreshResults, showResults } from "./results.js";
import { showTask } from "./task.js";
import { pointsAnnounced } from "./taskCurves.js";
import { refreshTasks, showTasks } from "./tasks.js";
import { getJson } from "./util.js";

const state = { overview: null, machines: null, view: null };

const views = {
  overview: document.getElementById("view-overview"),
  tasks: document.getElementById("view-tasks"),
  task: document.getElementById("view-task"),
  results: document.getElementById("view-results"),
};

/** "#/tasks?state=failed" → { name: "tasks", query }, "#/task/12" → { name: "task", id: 12 }. */
function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, search = ""] = hash.split("?");
  const query = new URLSearchParams(search);
  const task = /^task\/(\d+)$/.exec(path);
  if (task) return { name: "task", id: Number(task[1]), query };
  if (path === "tasks") return { name: "tasks", query };
  if (path === "results") return { name: "results", query };
  return { name: "overview", query };
}

async function navigate() {
  const current = route();
  const changed = state.view !== current.name;
  const focusedAtStart = document.activeElement;
  state.view = current.name;
  for (const [name, element] of Object.entries(views)) element.hidden = name !== current.name;
  for (const link of document.querySelectorAll("[data-nav]")) {
    const active =
      link.dataset.nav === current.name || (current.name === "task" && link.dataset.nav === "tasks");
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  try {
    if (current.name === "tasks") await showTasks(current.query);
    else if (current.name === "task") await showTask(current.id);
    else if (current.name === "results") await showResults(current.query);
  } catch (error) {
    reportError(error);
  }
  // Moving between views puts keyboard and screen-reader focus at the new content — unless the
  // user has moved it meanwhile (into the new view while it loaded): theirs wins.
  if (changed && document.activeElement !== document.body && document.activeElement === focusedAtStart) {
    const heading = views[current.name].querySelector("h2");
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      heading.focus({ preventScroll: false });
    }
  }
}

function reportError(error) {
  const live = document.getElementById("live");
  live.textContent = `Error: ${error.message}`;
  live.className = "live off";
}

function onOverview(overview) {
  state.overview = overview;
  renderOverview(document.getElementById("overview"), overview);
  if (!performance.getEntriesByName("overview-rendered").length) performance.mark("overview-rendered");
  // The visible view follows the ledger too (throttled in each view).
  if (state.view === "tasks") refreshTasks(overview);
  else if (state.view === "results") refreshResults(overview);
}

function onMachines(data) {
  state.machines = data;
  renderMachines(document.getElementById("machines"), data);
  renderAllocation(document.getElementById("allocation-area"), data.allocation);
}

function connect() {
  const live = document.getElementById("live");
  const events = new EventSource("api/v1/dashboard/events");
  events.addEventListener("open", () => {
    live.textContent = "Live";
    live.className = "live on";
  });
  events.addEventListener("error", () => {
    live.textContent = "Reconnecting…";
    live.className = "live off";
  });
  events.addEventListener("overview", (event) => onOverview(JSON.parse(event.data)));
  events.addEventListener("machines", (event) => onMachines(JSON.parse(event.data)));
  events.addEventListener("points", (event) => pointsAnnounced(JSON.parse(event.data).taskIds));
  window.addEventListener("pagehide", () => events.close());
}

async function start() {
  window.addEventListener("hashchange", () => void navigate());
  // The overview is fetched at once (it is cached server-side), without waiting for the stream.
  const first = getJson("/overview").then(onOverview, reportError);
  connect();
  await first;
  await navigate();
}

void start();
