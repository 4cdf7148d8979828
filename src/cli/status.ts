import { join } from "node:path";
import { type LiveCounts, type LivePhase, statusLines } from "../coordinator/liveCounts.js";
import { type StatusReport, statusReport } from "../coordinator/statusReport.js";
import { openLedgerReadOnly } from "../ledger/openLedger.js";
import { ALLOCATIONS_FILE, type AllocationReport, readAllocationReport } from "../slurm/allocator.js";
import { allocationLines } from "./allocationLines.js";
import { EXIT, UsageError } from "./exitCodes.js";
import { resultErrorLine } from "./owedRows.js";
import { stateDirFrom } from "./stateDir.js";

export interface StatusFlags {
  state?: string;
  /** The ledger's store (Default: $LABSWEEP_STORE, else the state dir's SQLite file). */
  store?: string;
  json?: boolean;
}

/** PostgreSQL's error code for a table that does not exist. */
const UNDEFINED_TABLE = "42P01";

/** Reads the ledger only, so it works from another terminal while a run is going. */
export async function statusCommand(configs: string[], flags: StatusFlags): Promise<number> {
  const stateDir = stateDirFrom(flags, configs);
  const db = openLedgerReadOnly(stateDir, { store: flags.store });
  if (!db)
    throw new UsageError(
      `no ledger in ${stateDir}: start one with \`labsweep run CONFIG…\` or \`labsweep run --command … --set …\` here (or pass --state DIR)`,
    );
  try {
    const report = await statusReport(db).catch((error: unknown) => {
      // A PostgreSQL database nobody has run or migrated yet has no tables: say so plainly.
      if ((error as { code?: string }).code === UNDEFINED_TABLE)
        throw new UsageError(
          "no ledger in this database yet: start one with `labsweep run CONFIG… --store URL` (or `labsweep migrate --store URL`)",
        );
      throw error;
    });
    // As `serve --slurm` last saved it; null without one.
    const allocation = readAllocationReport(join(stateDir, ALLOCATIONS_FILE));
    if (flags.json) {
      process.stdout.write(`${JSON.stringify({ ...report, allocation, stateDir })}\n`);
      return EXIT.ok;
    }
    printStatus({ ...report, allocation });
    return EXIT.ok;
  } finally {
    await db.close();
  }
}

/**
 * Prints a status report, local or from `GET /status` alike. A coordinator older than a field
 * sends none: that part is left out.
 */
export function printStatus(
  report: LiveCounts & { phases: LivePhase[] } & Partial<StatusReport> & {
      allocation?: AllocationReport | null;
    },
): void {
  for (const line of statusLines({ counts: report, phases: report.phases }))
    process.stdout.write(`${line}\n`);
  if (report.allocation)
    for (const line of allocationLines(report.allocation, false)) process.stdout.write(`${line}\n`);
  const usage = report.usage;
  if (usage && (usage.energy_wh !== null || usage.peak_rss_mb_max !== null)) {
    const energy = usage.energy_wh === null ? "" : `${usage.energy_wh} Wh GPU energy, `;
    process.stdout.write(`usage: ${energy}largest peak RSS ${usage.peak_rss_mb_max ?? "?"} MB\n`);
  }
  const dropped = report.dropped ?? 0;
  if (dropped > 0)
    process.stdout.write(`${dropped} tasks in the ledger are no longer in any config (kept)\n`);
  for (const failure of report.recentFailures ?? []) {
    process.stdout.write(`  failed task ${failure.task_id} ${failure.params_json}: ${failure.error ?? ""}\n`);
  }
  for (const requeue of report.recentRequeues ?? []) {
    process.stdout.write(`  requeued task ${requeue.taskId} at ${requeue.at}: ${requeue.why}\n`);
  }
  for (const dir of report.resultErrors ?? []) process.stdout.write(resultErrorLine(dir));
}
