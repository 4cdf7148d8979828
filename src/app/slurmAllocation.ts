import { mkdirSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import type { Coordinator } from "../coordinator/coordinator.js";
import type { RemoteAgents } from "../coordinator/remoteAgents.js";
import type { AllocationLimits } from "../slurm/allocationPlan.js";
import { ALLOCATIONS_FILE, SlurmAllocator } from "../slurm/allocator.js";
import { agentBinary, findOnPath, type SlurmJobSpec, sbatchScript, submitSbatch } from "../slurm/index.js";
import { cancelJobs, queuedJobs } from "../slurm/queue.js";
import { sbatchOptions } from "../slurm/sbatchOptions.js";
import { writeFileAtomically } from "../slurm/submit.js";

/** `serve --slurm`: what to submit, and within which limits. */
export interface SlurmAllocation extends Omit<AllocationLimits, "slotsPerJob"> {
  /**
   * One allocation's job, as `labsweep slurm` would submit it; `agents` is set per submission and
   * `servers` defaults to the URL the coordinator serves.
   */
  spec: Omit<SlurmJobSpec, "agents" | "servers"> & { servers: string[] | null };
  /** How often the queue is looked at. (Default: 5 s) */
  everyMs?: number;
}

/** Script name for the allocator's submissions, beside `labsweep slurm`'s own. */
const SCRIPT = "labsweep-alloc.sbatch";

/**
 * The allocator over this coordinator, its agents and this machine's SLURM commands. Throws when
 * sbatch, squeue or scancel is missing: `serve --slurm` then stops before it serves.
 */
export function slurmAllocator(
  allocation: SlurmAllocation,
  served: {
    coordinator: Coordinator;
    agents: RemoteAgents;
    stateDir: string;
    url: () => string;
    /** Given to the jobs in their environment (never in the script or an argv). */
    agentToken: string;
  },
  say: (message: string) => void,
): SlurmAllocator {
  const commands = {
    sbatch: findOnPath("sbatch"),
    squeue: findOnPath("squeue"),
    scancel: findOnPath("scancel"),
  };
  const missing = Object.entries(commands).filter(([, path]) => path === null);
  if (missing.length > 0)
    throw new Error(
      `--slurm needs SLURM's ${missing.map(([name]) => name).join(", ")} on PATH: serve from a login node`,
    );
  const { sbatch, squeue, scancel } = commands as Record<keyof typeof commands, string>;
  const env = { ...process.env, LABSWEEP_TOKEN: served.agentToken };
  const binary = agentBinary();
  return new SlurmAllocator(
    {
      async look() {
        const { idleSlots, connected } = served.agents.slurmView();
        const finished = await served.coordinator.isFinished();
        const claimable = finished ? 0 : await served.coordinator.claimableCount();
        return { claimable, idleSlots, finished, connected };
      },
      async submit(count) {
        const servers = allocation.spec.servers ?? [reachable(served.url())];
        const spec = { ...allocation.spec, agents: count, servers };
        mkdirSync(spec.outputDir, { recursive: true });
        const file = join(spec.outputDir, SCRIPT);
        // sbatch copies the script when it accepts the job: the next submission may overwrite it.
        writeFileAtomically(file, sbatchScript(spec, binary), 0o644);
        // Our choices on sbatch's command line too: they win over SBATCH_* in the environment.
        const options = sbatchOptions(spec).map((option) => option.arg);
        const submitted = await submitSbatch(sbatch, options, file, env);
        if (submitted.warnings) say(`sbatch: ${submitted.warnings}`);
        return submitted.jobId;
      },
      queued: (arrayIds) => queuedJobs(squeue, arrayIds, env),
      cancel: (ids) => cancelJobs(scancel, ids, env),
      say,
    },
    {
      maxJobs: allocation.maxJobs,
      minJobs: allocation.minJobs,
      slotsPerJob: allocation.spec.slots,
      everyMs: allocation.everyMs,
      stateFile: join(served.stateDir, ALLOCATIONS_FILE),
    },
  );
}

/** The served URL as compute nodes can reach it: a wildcard address becomes this host's name. */
function reachable(url: string): string {
  const parsed = new URL(url);
  if (parsed.hostname === "0.0.0.0" || parsed.hostname === "[::]") parsed.hostname = hostname();
  return parsed.origin;
}
