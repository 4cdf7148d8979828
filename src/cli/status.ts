import { liveCounts, statusLines } from "../coordinator/liveCounts.js";
import { openLedgerReadOnly } from "../ledger/openLedger.js";
import { resultDirErrors } from "../ledger/resultDirErrors.js";
import {
  droppedTaskCount,
  phaseProgress,
  runningTasks,
  taskCounts,
  usageTotals,
  waitingCounts,
} from "../ledger/taskCounts.js";
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
      `no ledger in ${stateDir}: start one with \`labsweep run CONFIG…\` (or pass --state DIR)`,
    );
  try {
    const counts = await taskCounts(db).catch((error: unknown) => {
      // A PostgreSQL database nobody has run or migrated yet has no tables: say so plainly.
      if ((error as { code?: string }).code === UNDEFINED_TABLE)
        throw new UsageError(
          "no ledger in this database yet: start one with `labsweep run CONFIG… --store URL` (or `labsweep migrate --store URL`)",
        );
      throw error;
    });
    const phases = await phaseProgress(db);
    const dropped = await droppedTaskCount(db);
    const usage = await usageTotals(db);
    const failures = await db.all<{ task_id: number; error: string | null; params_json: string }>(
      `SELECT a.task_id, a.error, t.params_json FROM tasks t JOIN attempts a ON a.id = (
          SELECT max(id) FROM attempts WHERE task_id = t.id)
        WHERE t.state = 'failed' AND t.active = 1 ORDER BY t.finished_at DESC LIMIT 5`,
    );
    // Requeues are when a worker, not the task, failed: say when and why (connection closed, lease expired).
    const requeues = (
      await db.all<{ at: number; task_id: number; detail: string }>(
        "SELECT at, task_id, detail FROM events WHERE kind = 'task_lost' ORDER BY id DESC LIMIT 10",
      )
    ).map((event) => ({
      at: new Date(event.at).toISOString(),
      taskId: event.task_id,
      why: (JSON.parse(event.detail) as { why?: string }).why ?? "",
    }));
    const view = liveCounts(counts, phases, await runningTasks(db), await waitingCounts(db));
    const resultErrors = await resultDirErrors(db);
    if (flags.json) {
      process.stdout.write(
        `${JSON.stringify({ ...view.counts, dropped, stateDir, phases: view.phases, recentFailures: failures, recentRequeues: requeues, usage, resultErrors })}\n`,
      );
      return EXIT.ok;
    }
    for (const line of statusLines(view)) process.stdout.write(`${line}\n`);
    if (usage.energy_wh !== null || usage.peak_rss_mb_max !== null) {
      const energy = usage.energy_wh === null ? "" : `${usage.energy_wh} Wh GPU energy, `;
      process.stdout.write(`usage: ${energy}largest peak RSS ${usage.peak_rss_mb_max ?? "?"} MB\n`);
    }
    if (dropped > 0)
      process.stdout.write(`${dropped} tasks in the ledger are no longer in any config (kept)\n`);
    for (const failure of failures) {
      process.stdout.write(
        `  failed task ${failure.task_id} ${failure.params_json}: ${failure.error ?? ""}\n`,
      );
    }
    for (const requeue of requeues) {
      process.stdout.write(`  requeued task ${requeue.taskId} at ${requeue.at}: ${requeue.why}\n`);
    }
    for (const dir of resultErrors) process.stdout.write(resultErrorLine(dir));
    return EXIT.ok;
  } finally {
    await db.close();
  }
}
