import type { CoordinatorPort } from "../agent/coordinatorPort.js";
import { ArtifactStore, storeBeforeReport } from "../coordinator/artifactStore.js";
import type { Coordinator } from "../coordinator/coordinator.js";
import { recordAttemptProcess } from "../ledger/recoverAbandoned.js";

/** The in-process path from an agent to its coordinator, used by `labsweep run`. */
export function localPort(coordinator: Coordinator): CoordinatorPort {
  const store = new ArtifactStore(coordinator.db);
  return {
    lease: (request) => coordinator.leaseMany(request, request.max),
    awaitWork: (maxWaitMs) => coordinator.awaitWork(maxWaitMs),
    heartbeat: (attemptIds) => coordinator.heartbeat(attemptIds),
    started: (attemptId, pid, logPath) => recordAttemptProcess(coordinator.db, attemptId, pid, logPath),
    // Files are local: copied into place, checked and recorded as an upload is, before the report.
    finish: async (attemptId, { artifacts, ...report }) =>
      coordinator.finish(attemptId, await storeBeforeReport(store, attemptId, report, artifacts)),
    isFinished: () => coordinator.isFinished(),
    claimableCount: () => coordinator.claimableCount(),
  };
}
