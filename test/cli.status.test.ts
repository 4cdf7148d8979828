/**
 * Text `status` tells what the ledger means, not just its states: cancelled tasks are shown,
 * tasks of waiting phases are "waiting" (not blocked), tasks leased ahead are "next up" (not
 * running), and after a kill -9 of a run nothing is claimed to run. Real SQLite ledgers, the
 * real CLI (`npm run build` first), a real `labsweep run` killed with SIGKILL.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cancelTasks } from "../src/ledger/cancelTasks.js";
import { claimTask } from "../src/ledger/claimTask.js";
import { evaluateGates } from "../src/ledger/evaluateGates.js";
import { openLedger } from "../src/ledger/openLedger.js";
import { recordAttemptProcess } from "../src/ledger/recoverAbandoned.js";
import { syncSweep } from "../src/ledger/syncSweep.js";
import { loadSweep } from "../src/sweep/loadSweep.js";
import { collect, runCli, startCli, tempDir, watch, writeFile } from "./helpers/cli.js";

// a: x 1..4 (open); b (after a): x 11, 12 (waiting).
const SWEEP =
  "command: 'true'\na:\n  combinations:\n    - x: [1, 2, 3, 4]\nb:\n  after: [a]\n  combinations:\n    - x: [11, 12]\n";

/** A ledger in `<dir>/.labsweep` as a run with two slots and one task held ahead leaves it. */
async function ledgerWithHeldTask(dir: string, worker: string): Promise<void> {
  const config = writeFile(dir, "sweep.yaml", SWEEP);
  const db = await openLedger(join(dir, ".labsweep"));
  try {
    await syncSweep(db, loadSweep([{ file: config, text: SWEEP }]), Date.now());
    await evaluateGates(db, Date.now());
    const claim = () =>
      claimTask(db, {
        worker,
        host: hostname(),
        now: Date.now(),
        leaseMs: 60_000,
        fits: () => ({ gpuIds: [] }),
      });
    // Two started (their pids recorded), one leased ahead and waiting for a slot.
    for (const _ of [1, 2]) {
      const claimed = await claim();
      if (!claimed) throw new Error("nothing to claim");
      await recordAttemptProcess(db, claimed.attemptId, process.pid, "log");
    }
    await claim();
    // The fourth of a is cancelled.
    await cancelTasks(db, { taskIds: [4] }, Date.now());
  } finally {
    await db.close();
  }
}

describe("text status", () => {
  it("shows cancelled, waiting apart from blocked, and held-ahead tasks as next up", async () => {
    const dir = tempDir();
    // This test process stands for the run: it is alive, on this host.
    await ledgerWithHeldTask(dir, `local-${hostname()}-${process.pid}`);
    const result = await runCli(["status", join(dir, "sweep.yaml")], { cwd: dir });
    expect(result.code, result.stderr).toBe(0);
    const [total = "", a = "", b = ""] = result.stdout.split("\n");
    expect(total).toBe(
      "0/6 done: 0 succeeded, 0 failed, 2 running, 1 pending (1 next up), 2 waiting, 0 blocked, 1 cancelled",
    );
    expect(a).toMatch(
      /^ {2}a: 0\/4 succeeded, 0 failed, 2 running, 1 pending \(1 next up\), 1 cancelled \[open\]$/,
    );
    expect(b).toMatch(/^ {2}b: 0\/2 succeeded, 0 failed, 0 running, 0 pending, 2 waiting \[waiting\]/);
    expect(result.stdout).not.toMatch(/requeued at the next run/);

    const json = JSON.parse(
      (await runCli(["status", join(dir, "sweep.yaml"), "--json"], { cwd: dir })).stdout,
    );
    expect(json).toMatchObject({ running: 2, pending: 1, nextUp: 1, waiting: 2, blocked: 0, cancelled: 1 });
  });

  it("claims nothing runs once the run that held the tasks is gone", async () => {
    const dir = tempDir();
    const gone = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"]);
    await ledgerWithHeldTask(dir, `local-${hostname()}-${gone.stdout.toString()}`);
    const result = await runCli(["status", join(dir, "sweep.yaml")], { cwd: dir });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^0\/6 done: 0 succeeded, 0 failed, 0 running, 3 pending, 2 waiting/);
    expect(result.stdout).toMatch(
      /^3 were running when the run stopped; they will be requeued at the next run$/m,
    );
  });

  it("after a kill -9 of a real run, says its tasks were running and will be requeued", async () => {
    const dir = tempDir();
    writeFile(dir, "task.sh", 'touch "started-$1"; sleep 60\n');
    const config = writeFile(
      dir,
      "sweep.yaml",
      "command: sh task.sh {x}\na:\n  combinations:\n    - x: [1, 2, 3]\n",
    );
    const run = startCli(["run", config, "--slots", "2", "--no-dashboard"], { cwd: dir });
    const ended = collect(run, 60_000);
    const deadline = Date.now() + 30_000;
    while (
      !(existsSync(join(dir, "started-1")) && existsSync(join(dir, "started-2"))) &&
      Date.now() < deadline
    )
      await new Promise((resolve) => setTimeout(resolve, 50));
    run.kill("SIGKILL");
    await ended;
    const result = await runCli(["status", config], { cwd: dir });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^0\/3 done: 0 succeeded, 0 failed, 0 running, 3 pending/);
    expect(result.stdout).toMatch(
      /^2 were running when the run stopped; they will be requeued at the next run$/m,
    );
  });

  it("status --server tells the same states over HTTP", async () => {
    const dir = tempDir();
    const config = writeFile(dir, "sweep.yaml", SWEEP);
    // Task 4 cancelled before the coordinator starts (cancelling over HTTP needs a token whose
    // kind is not this test's concern).
    const db = await openLedger(join(dir, ".labsweep"));
    try {
      await syncSweep(db, loadSweep([{ file: config, text: SWEEP }]), Date.now());
      await cancelTasks(db, { taskIds: [4] }, Date.now());
    } finally {
      await db.close();
    }
    const served = watch(startCli(["serve", config, "--port", "0"], { cwd: dir }));
    try {
      await served.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
      const url = (/^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(served.output()) as RegExpExecArray)[1] as string;
      const token = (await runCli(["token", "--state", join(dir, ".labsweep")])).stdout.trim();
      const result = await runCli(["status", "--server", url, `--token=${token}`]);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout.split("\n").slice(0, 3)).toEqual([
        "0/6 done: 0 succeeded, 0 failed, 0 running, 3 pending, 2 waiting, 0 blocked, 1 cancelled",
        "  a: 0/4 succeeded, 0 failed, 0 running, 3 pending, 1 cancelled [open]",
        "  b: 0/2 succeeded, 0 failed, 0 running, 0 pending, 2 waiting [waiting]  — waiting for a (1/4 settled)",
      ]);
    } finally {
      served.child.kill("SIGTERM");
      await served.result;
    }
  });
});
