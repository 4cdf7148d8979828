import type { Logger } from "../log/logger.js";
import type { Capacity } from "../protocol/capacity.js";
import type { Lease } from "../protocol/interfaces.js";
import type { HttpPort } from "./httpPort.js";
import { taskHere } from "./runDir.js";

/**
 * Leases for a remote agent, each with a cwd that exists here: the task's own (its config's dir,
 * or its snapshot, on the coordinator's machine), else `workdir` (--workdir; runDir.ts). A task with neither fails at once,
 * with a message saying what to do, and the lease is asked again.
 */
export async function leaseRunnable(
  port: HttpPort,
  request: { capacity: Capacity; max: number; signal?: AbortSignal },
  workdir: string | undefined,
  log: Logger,
): Promise<Lease[]> {
  for (;;) {
    const leases = await port.lease(request);
    const runnable: Lease[] = [];
    for (const lease of leases) {
      const task = taskHere(lease.task, workdir);
      if (task !== null) {
        runnable.push({ ...lease, task });
        continue;
      }
      const error = `cwd ${lease.task.cwd} does not exist on this machine: start the agent with --workdir DIR or check out the project at the same path`;
      log.info(`task ${lease.task.id} failed: ${error}`);
      await port.finish(lease.attemptId, {
        outcome: { kind: "failed", exitCode: null, signal: null, error, wallSeconds: 0 },
      });
    }
    if (runnable.length > 0 || leases.length === 0 || request.signal?.aborted) return runnable;
  }
}
