import { existsSync } from "node:fs";
import { join } from "node:path";
import { launchCommand } from "../agent/launchCommand.js";
import type { Db } from "../ledger/db.js";
import { tasksBySignature } from "../ledger/reads/signatures.js";
import { gpusWanted } from "../protocol/capacity.js";
import { readCsvFile } from "../results/csvFile.js";
import { RESULTS_FILE } from "../results/resumeScan.js";
import { matchCsvRows } from "../results/rowMatcher.js";
import { expandPhase, outputDirsOf, phaseSignatures } from "../sweep/expand.js";
import type { Sweep } from "../sweep/loadSweep.js";
import type { Params, TaskSpec } from "../sweep/types.js";

/** One task as `labsweep plan --list` shows it. */
export interface ListedTask {
  /** Position among the sweep's unique tasks, in the order `run` syncs them (1-based). */
  n: number;
  /** The ledger's task id, when the ledger already holds this task; else null. */
  id: number | null;
  /** The ledger's state of the task, when it holds it; else null. */
  state: string | null;
  /**
   * Already done: succeeded in the ledger, or its row is in a results CSV of one of its output
   * dirs (which `run` takes as done). A task with no id and not done is one `run` would add.
   */
  done: boolean;
  /** The first phase that declares the task (a task shared by phases is listed once). */
  phase: string;
  params: Params;
  /** GPUs the task asks for (resources.gpus); null when unset (one on a GPU machine, else none). */
  gpus: number | null;
  /** The full command line as the agent will start it, launcher included. */
  command: string;
  signature: string;
}

/** Stands for the port the agent picks when the task starts (`master_port`/`main_process_port: auto`). */
export const PORT_PLACEHOLDER = "<port>";

/**
 * The sweep's unique tasks with their full command lines, lazily (a huge grid is streamed).
 * A launcher's command is rendered as on a GPU machine that grants the task's GPUs: they are
 * the visible devices 0…n-1 inside the task, so only their count matters; an auto port is shown as
 * PORT_PLACEHOLDER, since it is picked free when the task starts. Reads the ledger, writes nothing.
 */
export async function* listTasks(sweep: Sweep, ledger: Db | null): AsyncGenerator<ListedTask> {
  const known = ledger ? await tasksBySignature(ledger) : new Map<string, { id: number; state: string }>();
  const found = await foundInResultCsvs(sweep);
  const seen = new Set<string>();
  let n = 0;
  for (const phase of sweep.phases) {
    for (const task of expandPhase(phase)) {
      if (seen.has(task.signature)) continue;
      seen.add(task.signature);
      const row = known.get(task.signature);
      yield {
        n: ++n,
        id: row?.id ?? null,
        state: row?.state ?? null,
        done: row?.state === "succeeded" || found.has(task.signature),
        phase: phase.name,
        params: task.params,
        gpus: task.policy.resources.gpus,
        command: fullCommand(task),
        signature: task.signature,
      };
    }
  }
}

/**
 * The command with its launcher as on a machine with GPUs, given GPUs 0…n-1: n as `allocate`
 * counts them (one for a fraction; one when `resources.gpus` is unset, as on any GPU machine).
 */
function fullCommand(task: TaskSpec): string {
  const count = Math.ceil(gpusWanted(task.policy.resources, true));
  const gpuIds = Array.from({ length: count }, (_, index) => index);
  return launchCommand(task.command, task.policy.launcher, gpuIds, { port: PORT_PLACEHOLDER });
}

/**
 * Signatures of the tasks whose rows the output dirs' results CSVs already hold (as `plan`
 * counts them): only dirs that have a CSV are walked, so a fresh sweep costs no expansion.
 */
async function foundInResultCsvs(sweep: Sweep): Promise<Set<string>> {
  const found = new Set<string>();
  const withCsv = new Set<string>();
  for (const phase of sweep.phases)
    for (const dir of outputDirsOf(phase)) if (existsSync(join(dir, RESULTS_FILE))) withCsv.add(dir);
  if (withCsv.size === 0) return found;
  const signatures: string[] = [];
  const byDir = new Map<string, Array<{ id: number; params: Params }>>();
  for (const phase of sweep.phases) {
    for (const point of phaseSignatures(phase)) {
      if (!withCsv.has(point.outputDir)) continue;
      const tasks = byDir.get(point.outputDir) ?? [];
      byDir.set(point.outputDir, tasks);
      tasks.push({ id: signatures.push(point.signature) - 1, params: point.params() });
    }
  }
  for (const [dir, tasks] of byDir) {
    const csv = await readCsvFile(join(dir, RESULTS_FILE));
    if (!csv) continue;
    for (const row of matchCsvRows(tasks, csv.header, csv.rows).matched)
      found.add(signatures[row.taskId] as string);
  }
  return found;
}
