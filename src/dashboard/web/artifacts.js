// A task's artifacts (docs/config.md `artifacts:`): each file with its size and SHA-256, and a
// link that downloads it (the server sends it as an attachment, never as a page). Its own
// block, added to the task page with one line.
import { h } from "./util.js";

/** The Artifacts section of task `taskId`; fills itself in once the list arrives. */
export function artifactsSection(taskId) {
  const body = h("p", {}, "Loading…");
  load(taskId).then(
    (files) => body.replaceWith(files.length ? table(taskId, files) : h("p", {}, "None stored.")),
    (error) => body.replaceWith(h("p", { role: "alert" }, error.message)),
  );
  return h(
    "section",
    { id: "task-artifacts", "aria-labelledby": "artifacts-heading" },
    h("h3", { id: "artifacts-heading" }, "Artifacts"),
    body,
  );
}

async function load(taskId) {
  const response = await fetch(taskUrl(taskId), { headers: { accept: "application/json" } });
  const text = await response.text();
  if (!response.ok) throw new Error(`${response.status}: ${errorOf(text)}`);
  return JSON.parse(text).artifacts;
}

function table(taskId, files) {
  return h(
    "table",
    { class: "data" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["File", "Size", "SHA-256"].map((label) => h("th", { scope: "col" }, label)),
      ),
    ),
    h(
      "tbody",
      {},
      files.map((file) =>
        h(
          "tr",
          {},
          h("td", {}, h("a", { href: fileUrl(taskId, file.path), download: "" }, file.path)),
          h("td", { class: "num" }, bytes(file.size)),
          h("td", {}, h("code", { title: file.sha256 }, file.sha256.slice(0, 12))),
        ),
      ),
    ),
  );
}

/** Relative to the page, as the dashboard's other calls are, so a path prefix works. */
function taskUrl(taskId) {
  return `api/v1/tasks/${encodeURIComponent(taskId)}/artifacts`;
}

function fileUrl(taskId, path) {
  return `${taskUrl(taskId)}/${path.split("/").map(encodeURIComponent).join("/")}`;
}

function bytes(size) {
  if (size < 1024) return `${size} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = size / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

function errorOf(text) {
  try {
    return JSON.parse(text).error ?? text;
  } catch {
    return text;
  }
}
