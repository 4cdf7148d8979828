/**
 * `labsweep pause` / `resume` and phase priorities, end to end: a real `labsweep run` going on
 * while another process pauses it (nothing new starts, status says so) and resumes it (it
 * finishes); priorities decide which phase's tasks start first; the admin API's /pause and
 * /resume take only the admin token. Real CLI (`npm run build` first), real SQLite ledger.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { runCli, startCli, tempDir, watch, writeFile } from "./helpers/cli.js";
import { ADMIN_TOKEN, AGENT_TOKEN, type Fixture, startFixture } from "./helpers/coordinatorFixture.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(check: () => boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

interface PhaseJson {
  name: string;
  paused: number;
  priority: number;
  pending: number;
}

async function phases(dir: string): Promise<PhaseJson[]> {
  const result = await runCli(["status", "sweep.yaml", "--json"], { cwd: dir });
  expect(result.code, result.stderr).toBe(0);
  return (JSON.parse(result.stdout) as { phases: PhaseJson[] }).phases;
}

describe("pause and resume", () => {
  it("a paused run starts nothing new, says so in status, and finishes once resumed", async () => {
    const dir = tempDir();
    // Each task marks that it started, then takes a second: six take long enough that `pause`,
    // however slowly a busy machine starts it, lands before the last has started.
    writeFile(
      dir,
      "sweep.yaml",
      "command: touch started-{x} && sleep 1\nwork:\n  combinations:\n    - x: [1, 2, 3, 4, 5, 6]\n",
    );
    const run = watch(startCli(["run", "sweep.yaml", "--slots", "1", "--no-dashboard"], { cwd: dir }));
    const started = () => readdirSync(dir).filter((name) => name.startsWith("started-")).length;
    await until(() => started() >= 1, "the first task");

    const paused = await runCli(["pause", "sweep.yaml"], { cwd: dir });
    expect(paused.code, paused.stderr).toBe(0);
    expect(paused.stdout).toBe("paused work: running tasks finish, nothing new starts\n");
    // What was already handed out (the running task, and one leased ahead to follow it) runs;
    // after that nothing starts while paused.
    await sleep(1500);
    const whilePaused = started();
    expect(whilePaused).toBeLessThan(6);
    await sleep(1000);
    expect(started()).toBe(whilePaused);
    const [work] = await phases(dir);
    expect(work).toMatchObject({ name: "work", paused: 1 });
    expect(work?.pending).toBeGreaterThan(0);
    expect((await runCli(["status", "sweep.yaml"], { cwd: dir })).stdout).toMatch(
      /\[paused: nothing new starts/,
    );
    expect((await runCli(["pause", "sweep.yaml"], { cwd: dir })).stdout).toBe(
      "every phase was already paused\n",
    );

    const resumed = await runCli(["resume", "sweep.yaml", "--phase", "work"], { cwd: dir });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toBe("resumed work\n");
    const result = await run.result;
    expect(result.code, run.output()).toBe(0);
    expect(started()).toBe(6);
    expect(
      readFileSync(join(dir, "results", "work", "final_results.csv"), "utf8")
        .trim()
        .split("\n"),
    ).toHaveLength(7);
  }, 60_000);

  it("names an unknown phase (exit 2) and a missing ledger, and changes nothing", async () => {
    const dir = tempDir();
    writeFile(dir, "sweep.yaml", "command: 'true'\ntrain:\n  combinations:\n    - x: [1]\n");
    const none = await runCli(["pause", "sweep.yaml"], { cwd: dir });
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/no ledger in .*nothing to pause/);
    expect(existsSync(join(dir, ".labsweep", "ledger.sqlite"))).toBe(false);
    expect((await runCli(["plan", "sweep.yaml"], { cwd: dir })).code).toBe(0);
    expect((await runCli(["run", "sweep.yaml", "--no-dashboard"], { cwd: dir })).code).toBe(0);
    const typo = await runCli(["resume", "sweep.yaml", "--phase", "trian"], { cwd: dir });
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain("unknown phase trian (phases: train)");
    expect(typo.stdout).toBe("");
    // A run of a paused sweep says so at its start.
    expect((await runCli(["pause", "sweep.yaml", "--phase", "train"], { cwd: dir })).code).toBe(0);
    const again = await runCli(["run", "sweep.yaml", "--no-dashboard"], { cwd: dir });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain("labsweep: paused (nothing of it starts until `labsweep resume`): train");
  });
});

describe("priority", () => {
  it("the phase with the higher priority runs first, then the rest by declaration", async () => {
    const dir = tempDir();
    writeFile(
      dir,
      "sweep.yaml",
      [
        "command: echo {x} >> order.txt",
        "first:",
        "  combinations:",
        "    - x: [1, 2]",
        "urgent:",
        "  priority: 10",
        "  combinations:",
        "    - x: [21, 22]",
        "later:",
        "  priority: -1",
        "  combinations:",
        "    - x: [31]",
        "",
      ].join("\n"),
    );
    const result = await runCli(["run", "sweep.yaml", "--slots", "1", "--no-dashboard"], { cwd: dir });
    expect(result.code, result.stderr).toBe(0);
    expect(readFileSync(join(dir, "order.txt"), "utf8").split("\n").filter(Boolean)).toEqual([
      "21",
      "22",
      "1",
      "2",
      "31",
    ]);
    expect((await phases(dir)).map(({ name, priority }) => [name, priority])).toEqual([
      ["first", 0],
      ["urgent", 10],
      ["later", -1],
    ]);
    const status = await runCli(["status", "sweep.yaml"], { cwd: dir });
    expect(status.stdout).toMatch(/urgent: .* priority 10/);
  });

  it("refuses a priority that is not a whole number, naming file:line", async () => {
    const dir = tempDir();
    writeFile(
      dir,
      "sweep.yaml",
      "command: 'true'\ntrain:\n  priority: high\n  combinations:\n    - x: [1]\n",
    );
    const result = await runCli(["plan", "sweep.yaml"], { cwd: dir });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/sweep\.yaml:3.*priority/);
  });
});

describe("the admin API", () => {
  let fixture: Fixture | undefined;
  afterEach(async () => {
    await fixture?.close();
    fixture = undefined;
  });

  it("pauses and resumes with the admin token only", async () => {
    fixture = await startFixture("command: 'true'\ntrain:\n  combinations:\n    - x: [1, 2]\n");
    const post = (path: string, token: string, body: unknown = {}) =>
      (fixture as Fixture).server.app.inject({
        method: "POST",
        url: `/api/v1${path}`,
        headers: { authorization: `Bearer ${token}` },
        payload: body as Record<string, unknown>,
      });
    expect((await post("/pause", AGENT_TOKEN)).statusCode).toBe(401);
    const paused = await post("/pause", ADMIN_TOKEN, { phase: "train" });
    expect(paused.statusCode).toBe(200);
    expect(paused.json()).toEqual({ phases: ["train"] });
    const unknown = await post("/pause", ADMIN_TOKEN, { phase: "nope" });
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json().error).toContain("unknown phase nope (phases: train)");
    expect((await post("/pause", ADMIN_TOKEN, { phase: 7 })).statusCode).toBe(400);
    expect((await post("/resume", ADMIN_TOKEN)).json()).toEqual({ phases: ["train"] });
  });
});
