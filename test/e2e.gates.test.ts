/**
 * End to end: phases ordered by `after` and judged by gates. A dependent phase waits until every
 * task of the phase it follows has settled (retries included), then runs or is blocked with a
 * reason `labsweep status` shows.
 * Run `npm run build` first: these tests run bin/labsweep.js, which runs dist/.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type CliResult, collect, runCli, startCli, tempDir, writeFile } from "./helpers/cli.js";

interface PhaseStatus {
  name: string;
  state: string;
  reason: string | null;
  unique: number;
  succeeded: number;
  failed: number;
  running: number;
  blocked: number;
}

interface StatusReport {
  unique: number;
  succeeded: number;
  failed: number;
  running: number;
  blocked: number;
  phases: PhaseStatus[];
}

interface Ran {
  phase: string;
  x: number;
  start: number;
  end: number;
}

/**
 * `sh task.sh PHASE X` sleeps (0.2 s, or the seconds in sleep-PHASE-X), appends
 * "PHASE X START END" (epoch ms) to ran.txt and fails when fail-PHASE-X exists, or once when
 * once-PHASE-X exists (it removes the file).
 */
const TASK = `start=$(date +%s%3N)
sleep "$(cat "sleep-$1-$2" 2>/dev/null || echo 0.2)"
code=0
[ -e "fail-$1-$2" ] && code=1
[ -e "once-$1-$2" ] && rm "once-$1-$2" && code=1
echo "$1 $2 $start $(date +%s%3N)" >> ran.txt
exit $code
`;

function ran(dir: string): Ran[] {
  const path = join(dir, "ran.txt");
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const [phase = "", x, start, end] = line.split(" ");
      return { phase, x: Number(x), start: Number(start), end: Number(end) };
    });
}

async function status(dir: string): Promise<StatusReport> {
  const result = await runCli(["status", join(dir, "sweep.yaml"), "--json"], { cwd: dir });
  expectCode(result, 0);
  return JSON.parse(result.stdout) as StatusReport;
}

function phase(report: StatusReport, name: string): PhaseStatus {
  const found = report.phases.find((candidate) => candidate.name === name);
  if (!found) throw new Error(`no phase ${name} in ${JSON.stringify(report)}`);
  return found;
}

function expectCode(result: CliResult, code: number): void {
  expect(result.code, `labsweep exited ${result.code}:\n${result.stderr}`).toBe(code);
}

async function waitUntil(condition: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

describe("gates", () => {
  it("blocks an all_succeeded phase after a failure, runs a min_success phase whose ratio is met", async () => {
    const dir = tempDir();
    writeFile(dir, "task.sh", TASK);
    writeFile(dir, "fail-A-4", "");
    writeFile(
      dir,
      "sweep.yaml",
      `command: sh task.sh {stage} {x}
retries: 0
A:
  defaults: {stage: A}
  combinations:
    - x: [1, 2, 3, 4]
B:
  after: [A]
  defaults: {stage: B}
  combinations:
    - x: [1, 2]
C:
  after: [A]
  gate: {min_success: 0.7}
  defaults: {stage: C}
  combinations:
    - x: [1, 2]
`,
    );
    const result = await runCli(["run", join(dir, "sweep.yaml"), "--slots", "2"], { cwd: dir });
    expectCode(result, 1);
    expect(result.stderr).toMatch(/finished — 5 succeeded, 1 failed, 2 blocked/);

    const tasks = ran(dir);
    expect(tasks.filter((task) => task.phase === "A")).toHaveLength(4);
    // B never ran: its gate failed.
    expect(tasks.filter((task) => task.phase === "B")).toEqual([]);
    // C ran: 3 of 4 (75 %) is at least 70 %.
    const cTasks = tasks.filter((task) => task.phase === "C");
    expect(cTasks.map((task) => task.x).sort()).toEqual([1, 2]);
    const aEnd = Math.max(...tasks.filter((task) => task.phase === "A").map((task) => task.end));
    for (const task of cTasks) expect(task.start).toBeGreaterThanOrEqual(aEnd);

    const report = await status(dir);
    expect(report).toMatchObject({ unique: 8, succeeded: 5, failed: 1, running: 0, blocked: 2 });
    expect(phase(report, "A")).toMatchObject({ state: "open", succeeded: 3, failed: 1 });
    expect(phase(report, "B")).toMatchObject({ state: "blocked", succeeded: 0, blocked: 2 });
    expect(phase(report, "B").reason).toBe("gate all_succeeded failed: 1 of 4 tasks of A did not succeed");
    expect(phase(report, "C")).toMatchObject({ state: "open", succeeded: 2, reason: null });

    const text = await runCli(["status", join(dir, "sweep.yaml")], { cwd: dir });
    expectCode(text, 0);
    expect(text.stdout).toMatch(/B: 0\/2 succeeded.*\[blocked\]\s+— gate all_succeeded failed/);

    // B's tasks never ran: no attempt was ever made for them, and there is no log for them.
    const taskDirs = readdirSync(join(dir, ".labsweep", "tasks"));
    expect(taskDirs).toHaveLength(6);
  });

  it("blocks a min_success phase when too few succeed, naming the ratio", async () => {
    const dir = tempDir();
    writeFile(dir, "task.sh", TASK);
    writeFile(dir, "fail-A-1", "");
    writeFile(dir, "fail-A-2", "");
    writeFile(
      dir,
      "sweep.yaml",
      `command: sh task.sh {stage} {x}
retries: 0
A:
  defaults: {stage: A}
  combinations:
    - x: [1, 2, 3, 4]
C:
  after: [A]
  gate: {min_success: 0.9}
  defaults: {stage: C}
  combinations:
    - x: [10]
`,
    );
    const result = await runCli(["run", join(dir, "sweep.yaml"), "--slots", "2"], { cwd: dir });
    expectCode(result, 1);
    expect(ran(dir).filter((task) => task.phase === "C")).toEqual([]);
    const report = await status(dir);
    expect(phase(report, "C")).toMatchObject({ state: "blocked", blocked: 1 });
    expect(phase(report, "C").reason).toBe("gate min_success 0.9 failed: A succeeded 2/4 (50.0%)");
  });

  it("holds a phase until everything it follows has settled, retries included", async () => {
    const dir = tempDir();
    writeFile(dir, "task.sh", TASK);
    // x = 1 is A's slowest task and fails once: when it fails, A's other tasks are done, and A
    // has only a task waiting out its retry backoff. That is not settled: B must wait for it.
    writeFile(dir, "once-A-1", "");
    writeFile(dir, "sleep-A-1", "1");
    writeFile(
      dir,
      "sweep.yaml",
      `command: sh task.sh {stage} {x}
retries: 2
backoff: 0.5s
A:
  defaults: {stage: A}
  combinations:
    - x: [1, 2, 3]
B:
  after: [A]
  defaults: {stage: B}
  combinations:
    - x: [1, 2]
`,
    );
    const cli = startCli(["run", join(dir, "sweep.yaml"), "--slots", "4"], { cwd: dir });
    const done = collect(cli);

    // While A runs, another process sees B waiting, and why.
    let seen: StatusReport | null = null;
    const tries: string[] = [];
    const sawWaiting = await waitUntil(async () => {
      if (!existsSync(join(dir, ".labsweep", "ledger.sqlite"))) return false;
      const report = await runCli(["status", join(dir, "sweep.yaml"), "--json"], { cwd: dir });
      tries.push(`${Date.now()} ${report.code} ${report.stdout}${report.stderr}`);
      if (report.code !== 0) return false;
      seen = JSON.parse(report.stdout) as StatusReport;
      return phase(seen, "A").running > 0;
    }, 10_000);
    expect(
      sawWaiting,
      `${tries.join("\n")}\nrun: ${JSON.stringify(await Promise.race([done, "running"]))}`,
    ).toBe(true);
    const during = seen as unknown as StatusReport;
    expect(phase(during, "B").state).toBe("waiting");
    expect(phase(during, "B").reason).toMatch(/^waiting for A \([0-2]\/3 settled\)$/);

    const result = await done;
    expectCode(result, 0);
    const tasks = ran(dir);
    const aRuns = tasks.filter((task) => task.phase === "A");
    const bRuns = tasks.filter((task) => task.phase === "B");
    expect(aRuns).toHaveLength(4); // x = 1 ran twice
    expect(bRuns).toHaveLength(2);
    const lastA = Math.max(...aRuns.map((task) => task.end));
    const firstB = Math.min(...bRuns.map((task) => task.start));
    expect(firstB).toBeGreaterThanOrEqual(lastA);
    const retried = aRuns.filter((task) => task.x === 1).sort((a, b) => a.start - b.start);
    const others = aRuns.filter((task) => task.x !== 1);
    expect(Math.max(...others.map((task) => task.end))).toBeLessThanOrEqual(retried[0]?.end ?? 0);
    expect(retried[1]?.start).toBeGreaterThanOrEqual((retried[0]?.end ?? 0) + 500);
    expect(firstB).toBeGreaterThanOrEqual(retried[1]?.end ?? Number.POSITIVE_INFINITY);

    const report = await status(dir);
    expect(phase(report, "B")).toMatchObject({ state: "open", succeeded: 2, reason: null });
  });
});
