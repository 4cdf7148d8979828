import { execFile } from "node:child_process";
import { userInfo } from "node:os";

/** One job array element of ours in SLURM's queue. */
export interface QueuedJob {
  /** `JOBID_INDEX`. */
  id: string;
  /** SLURM's state name: PENDING, CONFIGURING, RUNNING, COMPLETING, … */
  state: string;
  /** Why it waits (PENDING's reason: Resources, Priority, …), or "None". */
  reason: string;
}

/** What a SLURM state means to the allocator. */
export function phaseOf(state: string): "pending" | "running" | "ending" {
  if (state === "RUNNING" || state === "CONFIGURING") return "running";
  if (state === "COMPLETING" || state === "CANCELLED" || state === "COMPLETED") return "ending";
  // PENDING, REQUEUED, REQUEUE_HOLD, SUSPENDED, …: holding a place, not running tasks.
  return "pending";
}

/**
 * This user's jobs whose array job id is one of `arrayIds`, one line per element (`squeue -r`).
 * Asked by user, not by job id: squeue fails outright when a listed job id has left the queue.
 */
export async function queuedJobs(
  squeue: string,
  arrayIds: ReadonlySet<string>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<QueuedJob[]> {
  const stdout = await run(squeue, ["-h", "-r", "-u", userInfo().username, "-o", "%i|%T|%r"], env);
  const jobs: QueuedJob[] = [];
  for (const line of stdout.split("\n")) {
    const [id = "", state = "", reason = ""] = line.trim().split("|");
    if (arrayIds.has(id.split("_")[0] ?? "")) jobs.push({ id, state, reason });
  }
  return jobs;
}

/** `scancel` of these elements; ones that already left the queue are no error. */
export async function cancelJobs(scancel: string, ids: string[], env: NodeJS.ProcessEnv = process.env) {
  if (ids.length > 0) await run(scancel, ids, env);
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { env, timeout: 30_000 }, (error, stdout, stderr) => {
      if (error) {
        const said = String(stderr).trim().replaceAll("\n", " / ");
        reject(new Error(`${command} ${args[0] ?? ""} failed${said ? `: ${said}` : `: ${error.message}`}`));
      } else resolve(String(stdout));
    });
  });
}
