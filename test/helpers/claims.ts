import { type ClaimRequest, claimTask } from "../../src/ledger/claimTask.js";
import type { Db } from "../../src/ledger/db.js";
import type { Lease } from "../../src/protocol/interfaces.js";

/**
 * Claims the next task, or throws: worker "w" on host "h", a 60 s lease, no GPUs, unless the
 * request says otherwise. The ledger tests' one way to get a lease.
 */
export async function claimOrThrow(db: Db, request: Partial<ClaimRequest> & { now: number }): Promise<Lease> {
  const claimed = await claimTask(db, {
    worker: "w",
    host: "h",
    leaseMs: 60_000,
    fits: () => ({ gpuIds: [] }),
    ...request,
  });
  if (!claimed) throw new Error("nothing to claim");
  return claimed;
}
