import type { CoordinatorPort } from "../agent/coordinatorPort.js";
import { ArtifactStore, storeBeforeReport } from "../coordinator/artifactStore.js";
import type { Coordinator } from "../coordinator/coordinator.js";
import { recordPoints } from "../ledger/recordPoints.js";
import { recordAttemptProcess } from "../ledger/recoverAbandoned.js";

/** The in-process path from an agent to its coordinator, used by `labsweep run`. */
export function localPort(coordinator: Coordinator): CoordinatorPort {
  const store = new ArtifactStore(coordinator.db);
  return {
    // The ledger's word for the agent holding an attempt is its `worker`.
    lease: async ({ agentId, ...request }) => {
      const leases = await coordinator.leaseMany({ ...request, worker: agentId }, request.max);
      // A lease asked for ahead (waitMs 0) offers what a running task will free, not what is free.
      if (request.waitMs !== 0)
        coordinator.offers.record(
          { agentId, name: request.host, host: request.host },
          request.capacity,
          leases,
        );
      return leases;
    },
    awaitWork: (maxWaitMs) => coordinator.awaitWork(maxWaitMs),
    heartbeat: (attemptIds) => coordinator.heartbeat(attemptIds),
    started: (attemptId, pid, logPath) => recordAttemptProcess(coordinator.db, attemptId, pid, logPath),
    // Files are local: copied into place, checked and recorded as an upload is, before the report.
    finish: async (attemptId, { artifacts, ...report }) =>
      coordinator.finish(attemptId, await storeBeforeReport(store, attemptId, report, artifacts)),
    points: (batches) => recordPoints(coordinator.db, batches),
    isFinished: () => coordinator.isFinished(),
    claimableCount: () => coordinator.claimableCount(),
  };
}
