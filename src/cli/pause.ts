import { UnknownPhaseError } from "../ledger/knownPhase.js";
import { openLedger, openLedgerReadOnly } from "../ledger/openLedger.js";
import { pausePhases } from "../ledger/pausePhases.js";
import { callApi, type ServerFlags, serverFrom } from "./apiClient.js";
import { EXIT, UsageError } from "./exitCodes.js";
import { stateDirFrom } from "./stateDir.js";

export interface PauseFlags extends ServerFlags {
  state?: string;
  phase?: string;
}

/**
 * `labsweep pause` / `labsweep resume [--phase P]`: on a coordinator (--server, with the admin
 * token) or in the local ledger, which a `labsweep run` going on reads at its next lease. Running
 * tasks finish; a paused phase starts nothing new.
 */
export async function pauseCommand(paused: boolean, configs: string[], flags: PauseFlags): Promise<number> {
  const verb = paused ? "pause" : "resume";
  // As for `retry`: the local ledger unless --server names a coordinator.
  const server = flags.server ? serverFrom(flags, "admin") : null;
  let phases: string[];
  if (server) {
    const body = flags.phase === undefined ? {} : { phase: flags.phase };
    phases = ((await callApi(server, "POST", `/${verb}`, body)).json as { phases: string[] }).phases;
  } else {
    const stateDir = stateDirFrom(flags, configs);
    const existing = openLedgerReadOnly(stateDir);
    if (!existing) throw new UsageError(`no ledger in ${stateDir}: nothing to ${verb} (pass --state DIR?)`);
    await existing.close();
    const db = await openLedger(stateDir);
    try {
      phases = await pausePhases(db, paused, Date.now(), { phase: flags.phase }).catch((error: unknown) => {
        if (error instanceof UnknownPhaseError) throw new UsageError(error.message);
        throw error;
      });
    } finally {
      await db.close();
    }
  }
  const scope = flags.phase === undefined ? "every phase" : `phase ${flags.phase}`;
  if (phases.length === 0) process.stdout.write(`${scope} was already ${paused ? "paused" : "running"}\n`);
  else if (paused)
    process.stdout.write(`paused ${phases.join(", ")}: running tasks finish, nothing new starts\n`);
  else process.stdout.write(`resumed ${phases.join(", ")}\n`);
  return EXIT.ok;
}
