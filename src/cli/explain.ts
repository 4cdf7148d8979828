import { stateLockHeld } from "../coordinator/stateLock.js";
import { openLedgerReadOnly } from "../ledger/openLedger.js";
import { type Explanation, explainTask, TaskRefError } from "../ledger/reads/explain.js";
import { callApi, type ServerFlags, serverFrom } from "./apiClient.js";
import { EXIT, UsageError } from "./exitCodes.js";
import { stateDirFrom } from "./stateDir.js";

export interface ExplainFlags extends ServerFlags {
  state?: string;
  /** The ledger's store. (Default: $LABSWEEP_STORE, else the state dir's SQLite file) */
  store?: string;
  json?: boolean;
}

/**
 * `labsweep explain TASK [CONFIG…]`: why a task is not running. With --server, the coordinator
 * answers, judging by what its agents offer now; else the ledger does, judging by the connected
 * agents as they registered.
 */
export async function explainCommand(task: string, configs: string[], flags: ExplainFlags): Promise<number> {
  // --server, else $LABSWEEP_SERVER (as `agents` reads it), else the ledger.
  const server = serverFrom(flags);
  const explanation = server
    ? ((await callApi(server, "GET", `/tasks/${encodeURIComponent(task.trim())}/explain`))
        .json as Explanation)
    : await fromLedger(task, configs, flags);
  if (flags.json) process.stdout.write(`${JSON.stringify(explanation)}\n`);
  else process.stdout.write(explanationText(explanation, task));
  return EXIT.ok;
}

async function fromLedger(task: string, configs: string[], flags: ExplainFlags): Promise<Explanation> {
  const stateDir = stateDirFrom(flags, configs);
  const db = openLedgerReadOnly(stateDir, { store: flags.store });
  if (!db)
    throw new UsageError(`no ledger in ${stateDir}: nothing to explain (pass --state DIR or --server URL?)`);
  try {
    // A run or serve on a SQLite ledger holds its state dir; replicas of a PostgreSQL one may
    // work from other machines, so there no lock here says none is working.
    const coordinator = db.dialect === "sqlite" ? stateLockHeld(stateDir) : null;
    return await explainTask(db, task, { coordinator });
  } catch (error) {
    if (error instanceof TaskRefError) throw new UsageError(error.message);
    throw error;
  } finally {
    await db.close();
  }
}

/** The explanation for people: the task, then each cause in a sentence with its command. */
export function explanationText(explanation: Explanation, asked: string): string {
  const { task, reasons, offers } = explanation;
  const params = Object.entries(task.params)
    .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`)
    .join(" ");
  const lines = [`task ${task.id} (phase ${task.phase}, ${task.state})${params ? `: ${params}` : ""}`];
  for (const reason of reasons) {
    lines.push(`  ${reason.text}`);
    if (reason.hint) lines.push(`    → ${reason.hint}`);
  }
  if (offers?.source === "registered" && reasons.some((reason) => reason.code === "resources"))
    lines.push(
      `  (agents as they registered; for what they offer now: labsweep explain ${asked} --server URL)`,
    );
  return `${lines.join("\n")}\n`;
}
