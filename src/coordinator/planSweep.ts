import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Db } from "../ledger/db.js";
import { succeededSignatures } from "../ledger/reads/signatures.js";
import { readCsvFile } from "../results/csvFile.js";
import { RESULTS_FILE } from "../results/resumeScan.js";
import { matchCsvRows } from "../results/rowMatcher.js";
import { gridSize, outputDirsOf, phaseSignatures } from "../sweep/expand.js";
import type { Sweep } from "../sweep/loadSweep.js";
import type { Params } from "../sweep/types.js";

export interface PhasePlan {
  name: string;
  file: string;
  /** Grid points of the phase. */
  tasks: number;
  /** Grid points that are the same task as an earlier one. */
  merged: number;
  /** Grid points whose task is already complete (in the ledger or a results CSV). */
  complete: number;
  remaining: number;
}

export interface Plan {
  unique: number;
  merged: number;
  complete: number;
  remaining: number;
  phases: PhasePlan[];
}

/**
 * What `labsweep run` would do, without writing anything: tasks per phase, duplicates merged
 * across phases and files, and what the ledger or existing result CSVs already hold.
 */
export async function planSweep(sweep: Sweep, ledger: Db | null): Promise<Plan> {
  const succeeded = ledger ? await succeededSignatures(ledger) : new Set<string>();
  const dirsWithCsv = new Set<string>();
  for (const phase of sweep.phases) {
    for (const dir of outputDirsOf(phase)) if (existsSync(join(dir, RESULTS_FILE))) dirsWithCsv.add(dir);
  }
  const indexOf = new Map<string, number>();
  const complete: boolean[] = [];
  const byPhase: Array<{ phase: PhasePlan; taskIndexes: Uint32Array }> = [];
  const csvTasks = new Map<string, Array<{ id: number; params: Params }>>();
  for (const phase of sweep.phases) {
    const plan: PhasePlan = {
      name: phase.name,
      file: phase.file,
      tasks: 0,
      merged: 0,
      complete: 0,
      remaining: 0,
    };
    const taskIndexes = new Uint32Array(gridSize(phase));
    // Signatures and dirs only: a plan renders no command and builds no task.
    for (const point of phaseSignatures(phase)) {
      let index = indexOf.get(point.signature);
      if (index === undefined) {
        index = complete.length;
        indexOf.set(point.signature, index);
        complete.push(succeeded.has(point.signature));
      } else plan.merged++;
      taskIndexes[plan.tasks++] = index;
      const dir = point.outputDir;
      if (dirsWithCsv.has(dir)) {
        const list = csvTasks.get(dir) ?? [];
        if (list.length === 0) csvTasks.set(dir, list);
        list.push({ id: index, params: point.params() });
      }
    }
    byPhase.push({ phase: plan, taskIndexes });
  }
  for (const [dir, tasks] of csvTasks) {
    const csv = await readCsvFile(join(dir, RESULTS_FILE));
    if (!csv) continue;
    for (const row of matchCsvRows(tasks, csv.header, csv.rows).matched) complete[row.taskId] = true;
  }
  for (const { phase, taskIndexes } of byPhase) {
    for (const index of taskIndexes) if (complete[index]) phase.complete++;
    phase.remaining = phase.tasks - phase.complete;
  }
  const unique = complete.length;
  const done = complete.filter(Boolean).length;
  const merged = byPhase.reduce((sum, entry) => sum + entry.phase.merged, 0);
  return {
    unique,
    merged,
    complete: done,
    remaining: unique - done,
    phases: byPhase.map((entry) => entry.phase),
  };
}
