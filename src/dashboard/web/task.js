// A task's page: parameters, the error, the attempts as a timeline, and the log's tail, which
// follows a running attempt.
import { artifactsSection } from "./artifacts.js";
import { taskCurves } from "./taskCurves.js";
import { badge, clock, duration, fill, getJson, h, show } from "./util.js";
import { whySection } from "./why.js";

const root = document.getElementById("task-detail");
const heading = document.getElementById("task-heading");
const TAIL_LINES = 300;
let follow = null;

function stopFollowing() {
  if (follow) clearInterval(follow.timer);
  follow = null;
}

window.addEventListener("hashchange", () => {
  if (!/^#\/task\//.test(location.hash)) stopFollowing();
});

export async function showTask(id) {
  stopFollowing();
  heading.textContent = `Task ${id}`;
  root.setAttribute("aria-busy", "true");
  let task;
  try {
    task = await getJson(`/tasks/${id}`);
  } catch (error) {
    fill(root, h("p", { role: "alert" }, error.message));
    return;
  }
  heading.textContent = `Task ${task.id}`;
  const last = task.attempts.at(-1);
  const logBox = h(
    "pre",
    { class: "log", id: "task-log", tabindex: "0", "aria-label": "Log tail" },
    "Loading…",
  );
  const attemptSelect = h(
    "select",
    { id: "log-attempt" },
    task.attempts.map((attempt) =>
      h(
        "option",
        { value: attempt.number, selected: attempt === last },
        `attempt ${attempt.number}${attempt.outcome ? ` (${attempt.outcome})` : " (running)"}`,
      ),
    ),
  );
  fill(
    root,
    h(
      "dl",
      { class: "kv" },
      h("dt", {}, "State"),
      h("dd", {}, badge(task.state)),
      h("dt", {}, "Phase"),
      h(
        "dd",
        {},
        task.placements
          .map(
            (placement) =>
              `${placement.phase} → ${placement.outputDir}${placement.active ? "" : " (inactive)"}`,
          )
          .join("; ") || task.phase,
      ),
      h("dt", {}, "Command"),
      h("dd", {}, task.command),
      h("dt", {}, "Wall time"),
      h("dd", {}, task.wallSeconds === null ? "—" : duration(task.wallSeconds)),
      h("dt", {}, "Host"),
      h("dd", {}, task.host ?? "—"),
    ),
    whySection(task),
    task.error
      ? h(
          "div",
          { class: "error", id: "task-error", role: "note", "aria-label": "Error" },
          h("strong", {}, `Attempt ${task.error.attempt} ${task.error.outcome}`),
          task.error.exitCode !== null ? ` (exit code ${task.error.exitCode})` : "",
          task.error.signal ? ` (signal ${task.error.signal})` : "",
          h("pre", {}, task.error.message),
        )
      : null,
    h(
      "div",
      { class: "two" },
      h(
        "section",
        { "aria-labelledby": "params-heading" },
        h("h3", { id: "params-heading" }, "Parameters"),
        keyValues(task.params, "task-params"),
        task.result ? [h("h3", {}, "Metrics"), keyValues(task.result, "task-metrics")] : null,
      ),
      h(
        "section",
        { "aria-labelledby": "attempts-heading" },
        h("h3", { id: "attempts-heading" }, "Attempts"),
        attemptsTable(task.attempts),
      ),
    ),
    taskCurves(task),
    h(
      "section",
      { "aria-labelledby": "log-heading" },
      h("h3", { id: "log-heading" }, "Log"),
      task.attempts.length
        ? h(
            "div",
            { class: "filters" },
            h("div", { class: "field" }, h("label", { for: "log-attempt" }, "Attempt"), attemptSelect),
          )
        : null,
      task.attempts.length ? logBox : h("p", {}, "No attempt yet."),
    ),
    artifactsSection(task.id),
  );
  root.setAttribute("aria-busy", "false");
  if (!task.attempts.length) return;
  // The log comes in bounded pieces: first its tail, then, while the attempt runs, only the
  // bytes after what is shown (?offset=), so a long log is never fetched whole every 2 s.
  let log = null;
  const render = () => {
    const lines = log.text.split("\n");
    const cut = log.cut || lines.length > TAIL_LINES;
    const tail = lines.slice(-TAIL_LINES);
    log.text = tail.join("\n");
    log.cut = cut;
    const atBottom = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 4;
    logBox.textContent = (cut ? ["[… earlier lines not shown …]", ...tail] : tail).join("\n") || "(empty)";
    if (atBottom) logBox.scrollTop = logBox.scrollHeight;
  };
  const load = async () => {
    const attempt = attemptSelect.value;
    if (!log || log.attempt !== attempt)
      log = { attempt, next: null, text: "", cut: false, decoder: new TextDecoder() };
    const from = log.next === null ? "" : `&offset=${log.next}`;
    const response = await fetch(`api/v1/tasks/${task.id}/log?attempt=${encodeURIComponent(attempt)}${from}`);
    if (!response.ok) {
      logBox.textContent = `(${response.status}: no log)`;
      stopFollowing();
      return true;
    }
    const bytes = new Uint8Array(await response.arrayBuffer());
    const offset = Number(response.headers.get("x-labsweep-log-offset") ?? 0);
    const size = Number(response.headers.get("x-labsweep-log-size") ?? 0);
    if (log.next !== null && size < log.next) {
      // The log was trimmed to its tail on the coordinator: start again from its tail.
      log = null;
      return load();
    }
    log.cut ||= offset > 0 && log.next === null;
    log.text += log.decoder.decode(bytes, { stream: true });
    log.next = offset + bytes.length;
    render();
    const ended = response.headers.get("x-labsweep-attempt-ended") === "1" && log.next >= size;
    if (ended) stopFollowing();
    else if (log.next < size) return load(); // more than one piece is waiting
    return ended;
  };
  attemptSelect.addEventListener("change", () => {
    stopFollowing();
    void load().then((ended) => {
      if (!ended) follow = { timer: setInterval(() => void load(), 2000) };
    });
  });
  const ended = await load();
  if (!ended) follow = { timer: setInterval(() => void load(), 2000) };
}

function keyValues(object, id) {
  return h(
    "dl",
    { class: "kv", id },
    Object.entries(object).map(([key, value]) => [h("dt", {}, key), h("dd", {}, show(value))]),
  );
}

function attemptsTable(attempts) {
  if (!attempts.length) return h("p", {}, "Not started yet.");
  const start = Math.min(...attempts.map((attempt) => attempt.startedAt));
  const end = Math.max(...attempts.map((attempt) => attempt.endedAt ?? Date.now()));
  const span = Math.max(1, end - start);
  return h(
    "table",
    { class: "data", id: "task-attempts" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["#", "Outcome", "Machine", "Started", "Took", "Timeline"].map((label) =>
          h("th", { scope: "col" }, label),
        ),
      ),
    ),
    h(
      "tbody",
      {},
      attempts.map((attempt) => {
        const finish = attempt.endedAt ?? Date.now();
        const outcome = attempt.outcome ?? "running";
        return h(
          "tr",
          {},
          h("td", {}, String(attempt.number)),
          h(
            "td",
            {},
            badge(outcome),
            attempt.exitCode !== null && attempt.exitCode !== 0 ? ` exit ${attempt.exitCode}` : "",
          ),
          h("td", {}, `${attempt.host ?? attempt.worker}${attempt.gpuIds ? ` GPU ${attempt.gpuIds}` : ""}`),
          h("td", {}, clock(attempt.startedAt)),
          h("td", {}, duration((finish - attempt.startedAt) / 1000)),
          h(
            "td",
            {},
            h(
              "div",
              {
                class: "timeline",
                role: "img",
                "aria-label": `attempt ${attempt.number}: ${outcome}, ${duration((finish - attempt.startedAt) / 1000)}`,
              },
              h("span", {
                class: outcome,
                style: `left:${((100 * (attempt.startedAt - start)) / span).toFixed(2)}%;width:${((100 * (finish - attempt.startedAt)) / span).toFixed(2)}%`,
              }),
            ),
          ),
        );
      }),
    ),
  );
}
