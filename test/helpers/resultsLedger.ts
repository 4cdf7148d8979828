/**
 * A ledger with a sweep synced in and tasks made to succeed with chosen metrics, for the tests
 * of the results writer: real ledgers (SQLite or PostgreSQL), real CSV files in a temp dir.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { afterEach } from "vitest";
import { claimTask } from "../../src/ledger/claimTask.js";
import type { Db } from "../../src/ledger/db.js";
import { finishAttempt } from "../../src/ledger/finishAttempt.js";
import { syncSweep } from "../../src/ledger/syncSweep.js";
import type { TaskUsage } from "../../src/protocol/interfaces.js";
import { loadSweep } from "../../src/sweep/loadSweep.js";
import type { Params } from "../../src/sweep/types.js";
import type { LedgerBackend } from "./postgres.js";

const roots: string[] = [];
afterEach(() => {
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});

/** A fresh ledger with `yaml` (output dirs relative to a temp root) synced in. */
export async function sweepLedger(backend: LedgerBackend, yaml: string): Promise<{ db: Db; root: string }> {
  const root = mkdtempSync(join(tmpdir(), "labsweep-results-"));
  roots.push(root);
  const { db } = await backend.open();
  await syncSweep(db, loadSweep([{ file: join(root, "sweep.yaml"), text: yaml }]), 1000);
  return { db, root };
}

export interface Success {
  metrics: Record<string, unknown>;
  usage?: TaskUsage;
  wallSeconds?: number;
}

/**
 * Claims every claimable task and records its success with `result(params, taskId)`'s metrics.
 * Returns the task ids in the order they succeeded.
 */
export async function succeedAll(
  db: Db,
  result: (params: Params, taskId: number) => Success = () => ({ metrics: {} }),
  options: { gpuIds?: number[] } = {},
): Promise<number[]> {
  const done: number[] = [];
  for (;;) {
    const claim = await claimTask(db, {
      worker: "w",
      host: "h",
      now: 2000,
      leaseMs: 60_000,
      fits: () => ({ gpuIds: options.gpuIds ?? [] }),
    });
    if (!claim) return done;
    const { metrics, usage, wallSeconds } = result(claim.task.params, claim.task.id);
    await finishAttempt(
      db,
      claim.attemptId,
      { kind: "succeeded", metrics, wallSeconds: wallSeconds ?? 1, usage },
      3000,
    );
    done.push(claim.task.id);
  }
}

/** A CSV file's rows as objects by column (the header must have unique names). */
export function csvRecords(path: string): Array<Record<string, string>> {
  return parse(readFileSync(path), { columns: true }) as Array<Record<string, string>>;
}
