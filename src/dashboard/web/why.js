// A task's "Why not running" block: the explanation `labsweep explain` prints (its gate and the
// phase it waits for, a pause, a backoff, a resource no connected agent offers, its place in
// the queue), each cause a line with the command that lifts it. Its own block, added to the
// task page with one line.
import { getApiJson, h } from "./util.js";

/** The block for task `task`, or null where nothing needs explaining (running, done). */
export function whySection(task) {
  if (task.state === "running" || task.state === "succeeded") return null;
  const body = h("p", {}, "Loading…");
  getApiJson(`/tasks/${task.id}/explain`).then(
    (explanation) => body.replaceWith(reasons(explanation)),
    (error) => body.replaceWith(h("p", { role: "alert" }, error.message)),
  );
  return h(
    "section",
    { id: "task-why", class: "why", "aria-labelledby": "why-heading" },
    h("h3", { id: "why-heading" }, "Why not running"),
    body,
  );
}

function reasons(explanation) {
  return h(
    "ul",
    {},
    explanation.reasons.map((reason) =>
      h(
        "li",
        { "data-code": reason.code },
        reason.text,
        reason.hint ? [" — run ", h("code", {}, reason.hint)] : null,
      ),
    ),
  );
}
