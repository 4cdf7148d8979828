/**
 * Starting `labsweep run` requeues what a killed previous run left running — but not what
 * another live run sharing the ledger (--store) is running right now.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { prepareLedger } from "../src/app/localRun.js";
import { openSweep } from "../src/coordinator/openSweep.js";
import { claimTask } from "../src/ledger/claimTask.js";

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  delete process.env.LABSWEEP_STORE;
});

describe("prepareLedger on a ledger shared by several runs", () => {
  it("requeues dead runs' attempts and leaves live runs' alone", async () => {
    const dir = mkdtempSync(join(tmpdir(), "labsweep-shared-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const config = join(dir, "sweep.yaml");
    writeFileSync(
      config,
      "command: echo {x}\nmain:\n  output_dir: out\n  combinations:\n    - x: [1, 2, 3, 4]\n",
    );
    // One SQLite file shared by two state dirs, as --store sqlite:PATH allows.
    process.env.LABSWEEP_STORE = join(dir, "shared.sqlite");
    const first = await prepareLedger(join(dir, "state-a"), openSweep([config]), 1000);
    const alive = spawn("sleep", ["30"]);
    cleanups.push(() => {
      alive.kill("SIGKILL");
    });
    const dead = spawn("true");
    await new Promise((resolve) => dead.once("exit", resolve));
    const now = Date.now();
    const open = [
      { task: 1, worker: `local-${hostname()}-${alive.pid}`, lease: now + 60_000 }, // a live run here
      { task: 2, worker: `local-${hostname()}-${dead.pid}`, lease: now + 60_000 }, // a killed run here
      { task: 3, worker: "local-other-host-4242", lease: now + 60_000 }, // a run elsewhere, renewing
      { task: 4, worker: "local-other-host-4343", lease: now - 1 }, // a run elsewhere that stopped
    ];
    for (const { task, worker, lease } of open) {
      await first.db.run(
        "INSERT INTO attempts (task_id, number, worker, host, started_at, lease_expires) VALUES ($1, 1, $2, 'h', $3, $4)",
        [task, worker, now, lease],
      );
      await first.db.run(
        "UPDATE tasks SET state = 'running', attempt_id = (SELECT max(id) FROM attempts) WHERE id = $1",
        [task],
      );
    }
    await first.db.close();
    first.release();

    const second = await prepareLedger(join(dir, "state-b"), openSweep([config]), now);
    cleanups.push(async () => {
      await second.db.close();
      second.release();
    });
    expect(second.requeued).toBe(2);
    const states = await second.db.all<{ id: number; state: string }>(
      "SELECT id, state FROM tasks ORDER BY id",
    );
    expect(states).toEqual([
      { id: 1, state: "running" },
      { id: 2, state: "pending" },
      { id: 3, state: "running" },
      { id: 4, state: "pending" },
    ]);
  });

  it("requeues a task whose run died under it however often: a killed run spends no retry and no loss", async () => {
    const dir = mkdtempSync(join(tmpdir(), "labsweep-lost-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const config = join(dir, "sweep.yaml");
    writeFileSync(config, "command: echo {x}\nmax_lost: 2\nmain:\n  combinations:\n    - x: [1]\n");
    const stateDir = join(dir, ".labsweep");
    const dead = spawn("true");
    await new Promise((resolve) => dead.once("exit", resolve));
    const states: string[] = [];
    for (let start = 1; start <= 3; start++) {
      const prepared = await prepareLedger(stateDir, openSweep([config]), Date.now());
      states.push(
        ((await prepared.db.one<{ state: string }>("SELECT state FROM tasks")) as { state: string }).state,
      );
      // A run (long gone, like the one that claimed it) takes the task, and dies with it.
      await claimTask(prepared.db, {
        worker: `local-${hostname()}-${dead.pid}`,
        host: hostname(),
        now: Date.now(),
        leaseMs: 60_000,
        fits: () => ({ gpuIds: [] }),
      });
      await prepared.db.close();
      prepared.release();
    }
    // max_lost is 2, yet the third start still finds it pending: the user's reruns decide.
    expect(states).toEqual(["pending", "pending", "pending"]);
    const prepared = await prepareLedger(stateDir, openSweep([config]), Date.now());
    const task = (await prepared.db.one<{ state: string; losses: number; attempts: number }>(
      "SELECT state, losses, attempts FROM tasks",
    )) as { state: string; losses: number; attempts: number };
    await prepared.db.close();
    prepared.release();
    expect(task).toMatchObject({ state: "pending", losses: 0 });
    expect(existsSync(join(stateDir, "failed_experiments.csv"))).toBe(false);
  });
});
