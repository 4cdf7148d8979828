// `serve --slurm`'s allocations beside the machines: how many jobs, their states, and when
// allocation paused after failures, the reason and a button that resumes it (admin token).

import { apiUrl, clock, fill, h } from "./util.js";

let shown = "null";

/**
 * Renders the allocation box into `root` (empty when the coordinator allocates nothing). Only a
 * change is rendered, and never while the token field has focus: a re-render would wipe it.
 */
export function renderAllocation(root, allocation) {
  const text = JSON.stringify(allocation ?? null);
  if (text === shown || root.contains(document.activeElement)) return;
  shown = text;
  fill(root, allocationBox(allocation));
}

function allocationBox(allocation) {
  if (!allocation) return null;
  const byState = new Map();
  for (const job of allocation.jobs) byState.set(job.state, (byState.get(job.state) ?? 0) + 1);
  const counts = [...byState].map(([state, n]) => `${n} ${state.toLowerCase()}`).join(", ") || "none";
  return h(
    "div",
    { class: "allocation", id: "allocation" },
    h(
      "p",
      {},
      h("strong", {}, "SLURM allocations: "),
      `${counts} (at most ${allocation.maxJobs}, at least ${allocation.minJobs}, ${allocation.slotsPerJob} slot(s) each)`,
    ),
    allocation.paused ? pausedNotice(allocation.paused) : null,
    allocation.jobs.length
      ? h(
          "ul",
          { class: "summary" },
          allocation.jobs.map((job) =>
            h(
              "li",
              { "data-job": job.id },
              `job ${job.id}: ${job.state}`,
              job.state === "PENDING" && job.reason !== "None" ? ` (${job.reason})` : "",
              job.connected ? ", agent connected" : "",
              `, submitted ${clock(job.submittedAt)}`,
            ),
          ),
        )
      : null,
  );
}

function pausedNotice(paused) {
  const token = h("input", {
    type: "password",
    autocomplete: "off",
    "aria-label": "Admin token",
    placeholder: "admin token (labsweep token --admin)",
  });
  const said = h("span", { role: "status" });
  const form = h(
    "form",
    { class: "resume-alloc" },
    token,
    h("button", { type: "submit" }, "Resume allocation"),
    said,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void resume(token.value.trim(), said);
    token.value = ""; // never kept: the page may stay open on a shared screen
  });
  return h(
    "div",
    { class: "paused", id: "allocation-paused" },
    h("p", {}, h("strong", {}, "Allocation paused"), ` since ${clock(paused.since)}: ${paused.reason}`),
    form,
  );
}

async function resume(token, said) {
  said.textContent = "resuming…";
  const response = await fetch(apiUrl("/slurm/resume", {}, "api/v1"), {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: "{}",
  });
  if (response.ok) said.textContent = "resumed";
  else {
    const text = await response.text();
    let message = text;
    try {
      message = JSON.parse(text).error ?? text;
    } catch {
      // not JSON: show the text as it is
    }
    said.textContent = `${response.status}: ${message}`;
  }
}
