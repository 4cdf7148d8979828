import { expandPhase } from "../sweep/expand.js";
import type { Sweep } from "../sweep/loadSweep.js";
import type { Db } from "./db.js";
import { recordEvent } from "./recordEvent.js";

export interface PhaseSync {
  name: string;
  /** Grid points of the phase. */
  tasks: number;
  /** Grid points that are the same task as an earlier point (in this or an earlier phase). */
  merged: number;
}

export interface SyncReport {
  unique: number;
  merged: number;
  /** Tasks the ledger did not have before. */
  added: number;
  /** Tasks in the ledger that no loaded config lists any more (kept, not deleted). */
  dropped: number;
  phases: PhaseSync[];
}

/**
 * Brings the ledger in line with the configs in one transaction: new tasks are added, known
 * ones keep their state and results, and tasks no config lists any more are marked inactive
 * (reported, never deleted). A task declared by several phases is one row with one placement
 * per (phase, output dir); the first phase that declares it decides its run policy.
 */
export async function syncSweep(db: Db, sweep: Sweep, now: number): Promise<SyncReport> {
  return db.transaction(async (tx) => {
    const before = await tx.one<{ n: number }>("SELECT count(*) AS n FROM tasks");
    await tx.run("UPDATE placements SET active = 0 WHERE active = 1");
    await tx.run("UPDATE phases SET active = 0 WHERE active = 1");
    const seen = new Set<string>();
    const phases: PhaseSync[] = [];
    for (const [position, phase] of sweep.phases.entries()) {
      // A phase with nothing to wait for is open at once, so its tasks are inserted runnable and
      // never need a second pass. A changed `after` or gate, or a blocked phase that may have
      // new tasks, goes back to waiting and is judged again by evaluateGates.
      const stored = await tx.one<{ state: string }>(
        `INSERT INTO phases (name, config_file, position, after_json, gate_json, state, active)
         VALUES ($1, $2, $3, $4, $5, $6, 1)
         ON CONFLICT (name) DO UPDATE SET config_file = excluded.config_file, position = excluded.position,
           after_json = excluded.after_json, gate_json = excluded.gate_json, active = 1,
           state = CASE WHEN phases.after_json != excluded.after_json OR phases.gate_json != excluded.gate_json
                          OR phases.state = 'blocked' THEN 'waiting' ELSE phases.state END
         RETURNING state`,
        [
          phase.name,
          phase.file,
          position,
          JSON.stringify(phase.after),
          JSON.stringify(phase.gate),
          phase.after.length === 0 ? "open" : "waiting",
        ],
      );
      const runnable = stored?.state === "open" ? 1 : 0;
      const report: PhaseSync = { name: phase.name, tasks: 0, merged: 0 };
      const policyJson = JSON.stringify(phase.policy);
      for (const task of expandPhase(phase)) {
        report.tasks++;
        if (seen.has(task.signature)) {
          report.merged++;
          if (runnable) await tx.run("UPDATE tasks SET runnable = 1 WHERE signature = $1", [task.signature]);
        } else {
          seen.add(task.signature);
          await tx.run(
            `INSERT INTO tasks (signature, params_json, command, cwd, config_file, policy_json, runnable)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (signature) DO UPDATE SET command = excluded.command, cwd = excluded.cwd,
               config_file = excluded.config_file, policy_json = excluded.policy_json, active = 1,
               runnable = max(tasks.runnable, excluded.runnable)`,
            [
              task.signature,
              JSON.stringify(task.params),
              task.command,
              task.cwd,
              task.configFile,
              policyJson,
              runnable,
            ],
          );
        }
        await tx.run(
          `INSERT INTO placements (task_id, phase, output_dir, active)
           SELECT id, $2, $3, 1 FROM tasks WHERE signature = $1
           ON CONFLICT (task_id, phase, output_dir) DO UPDATE SET active = 1`,
          [task.signature, task.placement.phase, task.placement.outputDir],
        );
      }
      phases.push(report);
    }
    await tx.run(
      `UPDATE tasks SET active = 0 WHERE active = 1
         AND NOT EXISTS (SELECT 1 FROM placements p WHERE p.task_id = tasks.id AND p.active = 1)`,
    );
    const after = await tx.one<{ n: number; dropped: number }>(
      "SELECT count(*) AS n, coalesce(sum(1 - active), 0) AS dropped FROM tasks",
    );
    const added = (after?.n ?? 0) - (before?.n ?? 0);
    const merged = phases.reduce((sum, phase) => sum + phase.merged, 0);
    await recordEvent(tx, now, "sweep_synced", null, { files: sweep.files, unique: seen.size, added });
    return { unique: seen.size, merged, added, dropped: after?.dropped ?? 0, phases };
  });
}
