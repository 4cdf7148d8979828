// The task table: filters and sort live in the address (#/tasks?state=failed&sort=wall), pages
// are fetched by cursor from the server (which never counts a million rows to show fifty).
import { badge, clock, count, duration, fill, getJson, h, paramText } from "./util.js";

const COLUMNS = [
  { key: "id", label: "Task", sort: "id", num: true },
  { key: "state", label: "State", sort: "state" },
  { key: "phase", label: "Phase", sort: "phase" },
  { key: "params", label: "Parameters" },
  { key: "attempts", label: "Attempts counted", num: true },
  { key: "wall", label: "Wall time", sort: "wall", num: true },
  { key: "finished", label: "Finished", sort: "finished" },
  { key: "host", label: "Host" },
];

const form = document.getElementById("task-filters");
const table = document.getElementById("task-table");
const summary = document.getElementById("task-summary");
const buttons = {
  first: document.getElementById("task-first"),
  prev: document.getElementById("task-prev"),
  next: document.getElementById("task-next"),
};
/** Cursors of the pages before the current one, and the current page's. */
let pages = { key: "", stack: [], current: undefined, next: null };
let fieldsLoaded = false;

function currentQuery() {
  return new URLSearchParams(location.hash.split("?")[1] ?? "");
}

function setQuery(query) {
  const text = query.toString();
  location.hash = `#/tasks${text ? `?${text}` : ""}`;
}

async function loadFields() {
  if (fieldsLoaded) return;
  fieldsLoaded = true;
  const fields = await getJson("/fields");
  const phase = form.elements.phase;
  for (const name of fields.phases) phase.append(h("option", {}, name));
  const param = form.elements.param;
  for (const field of fields.params) param.append(h("option", {}, field.name));
}

function apiQuery(query) {
  const params = {
    state: query.get("state"),
    phase: query.get("phase"),
    q: query.get("q"),
    sort: query.get("sort") ?? "id",
    dir: query.get("dir") ?? "asc",
    limit: query.get("limit") ?? "50",
  };
  if (query.get("param") && query.get("value") !== null)
    params[`p.${query.get("param")}`] = query.get("value");
  return params;
}

/** Shows the tasks view for the address's query (a change of filter starts at the first page). */
export async function showTasks(query) {
  await loadFields();
  for (const name of ["state", "phase", "param", "value", "q"])
    form.elements[name].value = query.get(name) ?? "";
  form.elements.limit.value = query.get("limit") ?? "50";
  const key = query.toString();
  if (pages.key !== key) pages = { key, stack: [], current: undefined, next: null };
  await loadPage();
}

let loading = false;
let loadedAt = 0;

/**
 * Re-reads the first page when the ledger changed (called for every pushed overview), at most
 * every 2 s and never while the reader pages through older results.
 */
let version = null;

export function refreshTasks(overview) {
  if (overview.version === version) return;
  if (loading || pages.stack.length > 0 || Date.now() - loadedAt < 2000) return;
  version = overview.version;
  void loadPage();
}

async function loadPage() {
  loading = true;
  try {
    await loadPageNow();
  } finally {
    loading = false;
    loadedAt = Date.now();
  }
}

/** The newest page asked for: an older answer arriving after it (a live refresh overtaken by a
 * new filter) is dropped, never drawn over the newer one. */
let asked = 0;

async function loadPageNow() {
  const query = currentQuery();
  table.setAttribute("aria-busy", "true");
  const params = { ...apiQuery(query), after: pages.current };
  const ticket = ++asked;
  const page = await getJson("/tasks", params);
  if (ticket !== asked) return;
  pages.next = page.next;
  renderHead(query);
  renderRows(page.rows);
  const first = pages.stack.length * Number(params.limit) + 1;
  const shown = page.rows.length
    ? `Tasks ${count(first)}–${count(first + page.rows.length - 1)}`
    : "No task matches";
  const total = page.total === null ? (page.next ? " of many (more pages)" : "") : ` of ${count(page.total)}`;
  const searched = page.searchedTo
    ? ` · searched up to task ${count(page.searchedTo)}; “Next page” searches on`
    : "";
  summary.textContent = `${shown}${page.rows.length ? total : ""}${searched}`;
  buttons.first.disabled = pages.stack.length === 0;
  buttons.prev.disabled = pages.stack.length === 0;
  buttons.next.disabled = !page.next;
  table.setAttribute("aria-busy", "false");
}

function renderHead(query) {
  const sort = query.get("sort") ?? "id";
  const dir = query.get("dir") ?? "asc";
  fill(
    table.tHead,
    h(
      "tr",
      {},
      COLUMNS.map((column) => {
        const sorted = column.sort === sort;
        const ariaSort = sorted ? (dir === "asc" ? "ascending" : "descending") : column.sort ? "none" : null;
        const label = column.sort
          ? h(
              "button",
              {
                type: "button",
                class: "sort",
                "data-sort": column.sort,
                onclick: () => {
                  const next = currentQuery();
                  next.set("sort", column.sort);
                  next.set("dir", sorted && dir === "asc" ? "desc" : "asc");
                  setQuery(next);
                },
              },
              column.label,
            )
          : column.label;
        return h("th", { scope: "col", class: column.num ? "num" : null, "aria-sort": ariaSort }, label);
      }),
    ),
  );
}

function renderRows(rows) {
  fill(
    table.tBodies[0],
    rows.map((row) =>
      h(
        "tr",
        { "data-task": row.id },
        h("td", { class: "num" }, h("a", { href: `#/task/${row.id}` }, String(row.id))),
        h("td", {}, badge(row.state)),
        h("td", {}, row.phase),
        h("td", { class: "params" }, paramText(row.params)),
        h("td", { class: "num" }, String(row.attempts)),
        h("td", { class: "num" }, row.wallSeconds === null ? "—" : duration(row.wallSeconds)),
        h("td", {}, clock(row.finishedAt)),
        h("td", {}, row.host ?? ""),
      ),
    ),
  );
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const query = currentQuery();
  for (const name of ["state", "phase", "param", "value", "q", "limit"]) {
    const value = form.elements[name].value;
    if (value === "" || (name === "limit" && value === "50")) query.delete(name);
    else query.set(name, value);
  }
  if (!query.get("param")) query.delete("value");
  setQuery(query);
});
form.addEventListener("reset", () => {
  setTimeout(() => setQuery(new URLSearchParams()), 0);
});
buttons.next.addEventListener("click", () => {
  if (!pages.next) return;
  pages.stack.push(pages.current);
  pages.current = pages.next;
  void loadPage();
});
buttons.prev.addEventListener("click", () => {
  if (!pages.stack.length) return;
  pages.current = pages.stack.pop();
  void loadPage();
});
buttons.first.addEventListener("click", () => {
  pages.stack = [];
  pages.current = undefined;
  void loadPage();
});
