import type { AllocationReport } from "../slurm/allocator.js";

/**
 * How `serve --slurm`'s allocation goes, for `labsweep status` and `labsweep agents`: one line of
 * counts, the paused reason when paused, and with `jobs` a line per allocation.
 */
export function allocationLines(report: AllocationReport, jobs: boolean, now = Date.now()): string[] {
  const byState = new Map<string, number>();
  for (const job of report.jobs) byState.set(job.state, (byState.get(job.state) ?? 0) + 1);
  const counts = [...byState].map(([state, n]) => `${n} ${state.toLowerCase()}`).join(", ") || "none";
  const lines = [
    `slurm allocations: ${counts} (max ${report.maxJobs}, min ${report.minJobs}, ${report.slotsPerJob} slot(s) each)`,
  ];
  if (report.paused)
    lines.push(
      `  allocation PAUSED since ${new Date(report.paused.since).toISOString()}: ${report.paused.reason} — resume with: labsweep slurm --resume-alloc --server URL`,
    );
  else if (report.retryAt !== null && report.retryAt > now)
    lines.push(
      `  backing off after ${report.failures} failure(s): next submission in ${Math.ceil((report.retryAt - now) / 1000)} s`,
    );
  if (jobs)
    for (const job of report.jobs) {
      const why = job.state === "PENDING" && job.reason !== "None" ? ` (${job.reason})` : "";
      const agent = job.connected ? ", agent connected" : "";
      lines.push(
        `  job ${job.id}: ${job.state}${why}${agent}, submitted ${new Date(job.submittedAt).toISOString()}`,
      );
    }
  return lines;
}
