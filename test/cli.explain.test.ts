/**
 * `labsweep explain TASK`, end to end on a real `labsweep run`: a running task, a queued one and
 * its place in line, a gated one and how far the phase it waits for has come, a paused phase, a
 * retry backoff, a final failure, a done task by the start of its signature, no coordinator once
 * the run has gone, and one clear error (exit 2) for a task that is not there or not one.
 * From the ledger, and from the run's own server (--server: its live view of what its machine
 * offers). Real CLI (`npm run build` first), real SQLite ledger.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Database } from "../src/ledger/sqliteDriver.js";
import { runCli, startCli, tempDir, watch, writeFile } from "./helpers/cli.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(check: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

interface ExplanationJson {
  task: { id: number; signature: string; phase: string; state: string };
  reasons: Array<{ code: string; text: string; hint?: string; until?: number; ahead?: number }>;
  offers: { source: string; agents: Array<{ host: string; capacity: { freeSlots: number } }> } | null;
}

const SWEEP = [
  "retries: 0",
  "slow:",
  "  command: sh slow.sh {x}",
  "  combinations:",
  "    - x: [1, 2, 3]",
  "flaky:",
  "  retries: 2",
  "  backoff: 5m",
  "  command: sh fail.sh {z}",
  "  combinations:",
  "    - z: [1]",
  "report:",
  "  after: [slow]",
  "  command: echo {y}",
  "  combinations:",
  "    - y: [1]",
  "broken:",
  "  command: sh fail.sh {w}",
  "  combinations:",
  "    - w: [2]",
  "",
].join("\n");

describe("labsweep explain", () => {
  it("says why each task of a run is where it is, from the ledger and from the run's server", async () => {
    const dir = tempDir();
    writeFile(dir, "slow.sh", "touch started-$1\nwhile [ ! -e go ]; do sleep 0.05; done\n");
    writeFile(dir, "fail.sh", 'echo "ImportError: no module named torch $1" >&2\nexit 3\n');
    writeFile(dir, "sweep.yaml", SWEEP);
    const explain = (...args: string[]) => runCli(["explain", ...args], { cwd: dir });
    const explainJson = async (...args: string[]): Promise<ExplanationJson> => {
      const result = await explain(...args, "--json");
      expect(result.code, result.stderr).toBe(0);
      return JSON.parse(result.stdout) as ExplanationJson;
    };

    const run = watch(
      startCli(["run", "sweep.yaml", "--slots", "2", "--progress-every", "3600"], { cwd: dir }),
    );
    await run.waitFor(/dashboard at (http:\/\/127\.0\.0\.1:\d+)\//);
    const url = (
      /dashboard at (http:\/\/127\.0\.0\.1:\d+)\//.exec(run.output()) as RegExpExecArray
    )[1] as string;
    await until(() => existsSync(join(dir, "started-1")) && existsSync(join(dir, "started-2")), "two tasks");

    // Tasks are numbered as declared: slow 1-3, flaky 4, report 5, broken 6.
    const running = await explain("1", "sweep.yaml");
    expect(running.code, running.stderr).toBe(0);
    expect(running.stdout).toMatch(
      /^task 1 \(phase slow, running\): x=1\n {2}running on .+ since .+ \(attempt 1\)\n$/,
    );
    expect((await explain("3")).stdout).toContain(
      "queued: it is next: the next agent with room for it leases it",
    );
    expect((await explain("4")).stdout).toContain(
      "queued: 1 claimable task is leased before it (higher priority, or the same and a lower id)",
    );
    const gated = await explainJson("5");
    expect(gated.reasons.map((reason) => reason.code)).toEqual(["gate"]);
    expect(gated.reasons[0]?.text).toBe(
      "phase report runs after slow and needs all of them to succeed; waiting for slow: 0 of 3 settled (0 succeeded, 0 failed)",
    );

    // The run's server knows what its machine offers now: both slots taken.
    const live = await explainJson("3", "--server", url);
    expect(live.offers?.source).toBe("live");
    expect(live.offers?.agents).toHaveLength(1);
    expect(live.offers?.agents[0]?.capacity.freeSlots).toBe(0);
    expect(live.reasons).toEqual([
      expect.objectContaining({
        code: "queued",
        ahead: 0,
        text: "needs a free slot: every slot is busy now (1 agent); it is next: the next agent with room for it leases it",
      }),
    ]);
    const missing = await explain("99", "--server", url);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe("labsweep: the coordinator answered 404: no task 99 in this ledger\n");

    expect((await runCli(["pause", "--phase", "slow"], { cwd: dir })).code).toBe(0);
    const paused = await explain("3");
    expect(paused.stdout).toBe(
      "task 3 (phase slow, pending): x=3\n  phase slow is paused: nothing of it starts\n    → labsweep resume --phase slow\n",
    );
    expect((await runCli(["resume", "--phase", "slow"], { cwd: dir })).code).toBe(0);

    writeFile(dir, "go", "");
    await until(async () => (await explainJson("4")).reasons[0]?.code === "backoff", "flaky's backoff");
    const backoff = await explainJson("4");
    expect(backoff.reasons[0]?.text).toMatch(
      /^retry backoff after attempt 1 \(.+\): not started before \d{4}-\d\d-\d\dT[\d:.]+Z \(in [45] min\)$/,
    );
    expect(backoff.reasons[0]?.until).toBeGreaterThan(Date.now() + 4 * 60_000);
    await until(async () => (await explainJson("6")).task.state === "failed", "broken's failure");
    const failed = await explain("6");
    expect(failed.stdout).toMatch(
      /^task 6 \(phase broken, failed\): w=2\n {2}failed for good after 1 attempt: .+\n/,
    );
    expect(failed.stdout).toContain("    → labsweep retry --failed --phase broken\n");
    await until(async () => (await explainJson("5")).task.state === "succeeded", "report");

    // Ctrl-C: the run stops (flaky waits out its backoff), and nothing works on the ledger.
    run.child.kill("SIGINT");
    expect((await run.result).code).toBe(130);
    const stranded = await explainJson("4");
    expect(stranded.reasons.map((reason) => reason.code)).toEqual(["backoff", "no_coordinator"]);
    expect(stranded.reasons[1]?.text).toBe(
      "no coordinator is working on this ledger: nothing is leased until one starts",
    );

    // A done task, named by the start of its signature.
    const done = await explainJson("5");
    const bySignature = await explain(done.task.signature.slice(0, 6));
    expect(bySignature.code, bySignature.stderr).toBe(0);
    expect(bySignature.stdout).toMatch(
      /^task 5 \(phase report, succeeded\): y=1\n {2}done: it succeeded at .+ on .+\n$/,
    );
  }, 90_000);

  it("names a task that is not there, not a task, or not one task: exit 2, one line", async () => {
    const dir = tempDir();
    writeFile(dir, "sweep.yaml", "command: echo {x}\nwork:\n  combinations:\n    - x: [1, 2, 3]\n");
    const before = await runCli(["explain", "1", "sweep.yaml"], { cwd: dir });
    expect(before.code).toBe(2);
    expect(before.stderr).toMatch(/^labsweep: no ledger in .*\.labsweep: nothing to explain/);
    expect((await runCli(["run", "sweep.yaml", "--no-dashboard"], { cwd: dir })).code).toBe(0);

    const cases: Array<[string, string]> = [
      ["7", "labsweep: no task 7 in this ledger\n"],
      [
        "a b",
        'labsweep: "a b" is neither a task id (a number) nor a signature (4 or more of its characters)\n',
      ],
      [
        "abc",
        'labsweep: "abc" is neither a task id (a number) nor a signature (4 or more of its characters)\n',
      ],
      ["zzzzzzzz", "labsweep: no task's signature starts with zzzzzzzz\n"],
    ];
    for (const [ref, error] of cases) {
      const result = await runCli(["explain", ref, "sweep.yaml"], { cwd: dir });
      expect(result.code, ref).toBe(2);
      expect(result.stderr).toBe(error);
      expect(result.stdout).toBe("");
    }
    // Two signatures that start alike (signatures are random-looking; these are made so).
    const db = new Database(join(dir, ".labsweep", "ledger.sqlite"));
    db.prepare("UPDATE tasks SET signature = 'Sgn-' || id || 'rest' WHERE id IN (1, 2)").run();
    db.close();
    const ambiguous = await runCli(["explain", "Sgn-", "sweep.yaml"], { cwd: dir });
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr).toBe(
      "labsweep: Sgn- starts the signatures of several tasks (1, 2): give more of it, or the task id\n",
    );
    const exact = await runCli(["explain", "Sgn-2", "sweep.yaml"], { cwd: dir });
    expect(exact.stdout).toMatch(/^task 2 \(phase work, succeeded\)/);
  });
});
