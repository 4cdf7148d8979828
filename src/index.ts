/**
 * labsweep as a library: the surface `package.json` promises (`main`/`types`). Three steps run a
 * sweep from a program as `labsweep run` does, without the CLI's flags, signals or printing:
 *
 * ```ts
 * import { readFileSync } from "node:fs";
 * import { loadSweep, prepareLedger, runLocally, statusReport } from "labsweep";
 *
 * // 1. Load a sweep: config texts → validated phases (throws ConfigError naming file:line).
 * const sweep = loadSweep([{ file: "sweep.yaml", text: readFileSync("sweep.yaml", "utf8") }]);
 * // 2. Open its ledger: takes the state dir's lock, syncs the configs in, resumes from CSVs.
 * const ledger = await prepareLedger(".labsweep", sweep);
 * try {
 *   // 3. Run locally: an in-process coordinator and one agent on this machine's GPUs or cores.
 *   const { exit } = await runLocally(ledger.db, { stateDir: ".labsweep" });
 *   console.log(exit.kind, (await statusReport(ledger.db)).succeeded);
 * } finally {
 *   await ledger.db.close();
 *   ledger.release();
 * }
 * ```
 *
 * `openLedger` opens (and migrates) a ledger without the lock or a sweep, e.g. for reading.
 * Everything else under `src/` is internal and may change between versions.
 */

export {
  type LocalRunOptions,
  type LocalRunResult,
  type PreparedLedger,
  prepareLedger,
  runLocally,
} from "./app/localRun.js";
export { type StatusReport, statusReport } from "./coordinator/statusReport.js";
export type { Db } from "./ledger/db.js";
export { type OpenLedgerOptions, openLedger, openLedgerReadOnly } from "./ledger/openLedger.js";
export {
  ConfigError,
  expandPhase,
  gridSize,
  type LoadOptions,
  loadSweep,
  parseSweepFile,
  type Sweep,
} from "./sweep/index.js";
export type * from "./sweep/types.js";
