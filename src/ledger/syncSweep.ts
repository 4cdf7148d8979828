import { expandPhase } from "../sweep/expand.js";
import type { Sweep } from "../sweep/loadSweep.js";
import type { TaskSpec } from "../sweep/types.js";
import type { Db } from "./db.js";
import { LEDGER_LOCKS, lockLedger } from "./dialect.js";
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
 * Rows per multi-row INSERT: a million-task grid is a few thousand statements, not two million.
 * The widest statement binds 4 values a row (1,602 in all): far below SQLite's 32,766 and
 * PostgreSQL's 65,535 parameters per statement.
 */
const BATCH = 400;

/**
 * Brings the ledger in line with the configs in one transaction: new tasks are added, known
 * ones keep their state and results, and tasks no config lists any more are marked inactive
 * (reported, never deleted). A task declared by several phases is one row with one placement
 * per (phase, output dir); the first phase that declares it decides its run policy.
 */
export async function syncSweep(db: Db, sweep: Sweep, now: number): Promise<SyncReport> {
  return db.transaction(async (tx) => {
    // On PostgreSQL another coordinator may sync at the same moment: ids are max(id) + 1 and
    // duplicates are found in memory, so syncs take turns (SQLite's write lock does this there).
    // Gate evaluation waits too: it would judge phases by the states this sync is rewriting.
    // Always in this order (sync, then gates), so the two never wait for each other in a cycle.
    await lockLedger(tx, LEDGER_LOCKS.sync);
    await lockLedger(tx, LEDGER_LOCKS.gates);
    // Known signatures → ids; negative until this sync meets the task, so a second meeting is a merge.
    const idOf = new Map<string, number>();
    for (const row of await tx.all<{ id: number; signature: string }>("SELECT id, signature FROM tasks")) {
      idOf.set(row.signature, -row.id);
    }
    const before = idOf.size;
    let nextId =
      ((await tx.one<{ last: number | null }>("SELECT max(id) AS last FROM tasks"))?.last ?? 0) + 1;
    await tx.run("UPDATE placements SET active = 0 WHERE active = 1");
    await tx.run("UPDATE phases SET active = 0 WHERE active = 1");
    let unique = 0;
    const phases: PhaseSync[] = [];
    for (const [position, phase] of sweep.phases.entries()) {
      const runnable = (await upsertPhase(tx, phase, position)) === "open" ? 1 : 0;
      const report: PhaseSync = { name: phase.name, tasks: 0, merged: 0 };
      const batch: Batch = { fresh: [], revived: [], placed: [] };
      for (const task of expandPhase(phase)) {
        report.tasks++;
        const known = idOf.get(task.signature);
        let id: number;
        if (known !== undefined && known > 0) {
          id = known;
          report.merged++;
          if (runnable) batch.revived.push(id);
        } else if (known !== undefined) {
          id = -known;
          idOf.set(task.signature, id);
          batch.revived.push(id);
          unique++;
        } else {
          id = nextId++;
          idOf.set(task.signature, id);
          batch.fresh.push({ id, task });
          unique++;
        }
        batch.placed.push({ id, task });
        if (batch.placed.length >= BATCH) await writeBatch(tx, batch, phase.name, runnable);
      }
      await writeBatch(tx, batch, phase.name, runnable);
      phases.push(report);
    }
    // Only tasks the ledger had before can have dropped out; a first sync skips both scans.
    let dropped = 0;
    if (before > 0) {
      await tx.run(
        `UPDATE tasks SET active = 0 WHERE active = 1
           AND NOT EXISTS (SELECT 1 FROM placements p WHERE p.task_id = tasks.id AND p.active = 1)`,
      );
      dropped = (await tx.one<{ n: number }>("SELECT count(*) AS n FROM tasks WHERE active = 0"))?.n ?? 0;
    }
    const newTasks = idOf.size - before;
    const merged = phases.reduce((sum, phase) => sum + phase.merged, 0);
    await recordEvent(tx, now, "sweep_synced", null, { files: sweep.files, unique, added: newTasks });
    return { unique, merged, added: newTasks, dropped, phases };
  });
}

interface Batch {
  /** Tasks the ledger has never seen, with the ids they get. */
  fresh: Array<{ id: number; task: TaskSpec }>;
  /**
   * Known tasks met again: active again, and runnable exactly when this phase is open. A task's
   * first meeting in a sync sets the flag (so one that moved into a waiting phase stops being
   * runnable); later meetings are only listed from open phases, so they can only raise it.
   */
  revived: number[];
  placed: Array<{ id: number; task: TaskSpec }>;
}

async function writeBatch(tx: Db, batch: Batch, phase: string, runnable: number): Promise<void> {
  if (batch.fresh.length > 0) {
    const values: unknown[] = [phase, runnable];
    const rows = batch.fresh.map(({ id, task }) => {
      const base = values.length;
      values.push(id, task.signature, JSON.stringify(task.params), task.command);
      return `($${base + 1}, $${base + 2}, $${base + 3}, $${base + 4}, $1, $2)`;
    });
    await tx.run(
      `INSERT INTO tasks (id, signature, params_json, command, phase, runnable) VALUES ${rows.join(", ")}`,
      values,
    );
  }
  if (batch.revived.length > 0) {
    await tx.run(
      `UPDATE tasks SET active = 1, runnable = $1
        WHERE id IN (${batch.revived.map((_, index) => `$${index + 2}`).join(", ")})`,
      [runnable, ...batch.revived],
    );
  }
  if (batch.placed.length > 0) {
    const values: unknown[] = [phase];
    const rows = batch.placed.map(({ id, task }) => {
      const base = values.length;
      values.push(id, task.placement.outputDir);
      return `($${base + 1}, $1, $${base + 2}, 1)`;
    });
    await tx.run(
      `INSERT INTO placements (task_id, phase, output_dir, active) VALUES ${rows.join(", ")}
       ON CONFLICT (task_id, phase, output_dir) DO UPDATE SET active = 1`,
      values,
    );
  }
  batch.fresh = [];
  batch.revived = [];
  batch.placed = [];
}

/**
 * A phase with nothing to wait for is open at once, so its tasks are inserted runnable and
 * never need a second pass. A changed `after` or gate, or a blocked phase that may have new
 * tasks, goes back to waiting and is judged again by evaluateGates. Returns the stored state.
 */
async function upsertPhase(tx: Db, phase: Sweep["phases"][number], position: number): Promise<string> {
  const stored = await tx.one<{ state: string }>(
    `INSERT INTO phases (name, config_file, position, after_json, gate_json, state, active, cwd, policy_json, priority)
     VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $9)
     ON CONFLICT (name) DO UPDATE SET config_file = excluded.config_file, position = excluded.position,
       cwd = excluded.cwd, policy_json = excluded.policy_json, priority = excluded.priority,
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
      phase.baseDir,
      JSON.stringify(phase.policy),
      phase.priority,
    ],
  );
  return stored?.state ?? "waiting";
}
