import type { CoordinatorPort } from "../agent/coordinatorPort.js";
import type { Coordinator } from "../coordinator/coordinator.js";
import { recordPoints } from "../ledger/recordPoints.js";
import { recordAttemptProcess } from "../ledger/recoverAbandoned.js";

/** The in-process path from an agent to its coordinator, used by `labsweep run`. */
export function localPort(coordinator: Coordinator): CoordinatorPort {
  return {
    // The ledger's word for the agent holding an attempt is its `worker`.
    lease: ({ agentId, ...request }) => coordinator.leaseMany({ ...request, worker: agentId }, request.max),
    awaitWork: (maxWaitMs) => coordinator.awaitWork(maxWaitMs),
    heartbeat: (attemptIds) => coordinator.heartbeat(attemptIds),
    started: (attemptId, pid, logPath) => recordAttemptProcess(coordinator.db, attemptId, pid, logPath),
    finish: (attemptId, report) => coordinator.finish(attemptId, report),
    points: (batches) => recordPoints(coordinator.db, batches),
    isFinished: () => coordinator.isFinished(),
    claimableCount: () => coordinator.claimableCount(),
  };
}
