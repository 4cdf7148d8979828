import { evaluateGates } from "../ledger/evaluateGates.js";
import { UnknownPhaseError } from "../ledger/knownPhase.js";
import { openLedger, openLedgerReadOnly } from "../ledger/openLedger.js";
import { retryFailed } from "../ledger/retryFailed.js";
import { EXIT, UsageError } from "./exitCodes.js";
import { stateDirFrom } from "./stateDir.js";

export interface RetryFlags {
  state?: string;
  failed?: boolean;
  phase?: string;
}

export async function retryCommand(configs: string[], flags: RetryFlags): Promise<number> {
  if (!flags.failed) throw new UsageError("say what to retry: `labsweep retry --failed [--phase P]`");
  const stateDir = stateDirFrom(flags, configs);
  const existing = openLedgerReadOnly(stateDir);
  if (!existing) throw new UsageError(`no ledger in ${stateDir}: nothing to retry (pass --state DIR?)`);
  await existing.close();
  const db = await openLedger(stateDir);
  try {
    const count = await retryFailed(db, Date.now(), { phase: flags.phase }).catch((error: unknown) => {
      if (error instanceof UnknownPhaseError) throw new UsageError(error.message);
      throw error;
    });
    // Phases the failures had blocked are judged again now, so `status` shows why they wait.
    await evaluateGates(db, Date.now());
    process.stdout.write(
      `${count} failed task${count === 1 ? "" : "s"} will run again (a running \`labsweep run\` picks them up; otherwise start one)\n`,
    );
    return EXIT.ok;
  } finally {
    await db.close();
  }
}
