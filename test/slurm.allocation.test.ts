/**
 * `serve --slurm` on a real single-node SLURM (test/helpers/slurmCluster.ts): agent jobs are
 * submitted while tasks wait and end when the work does, never more than --max-jobs at once;
 * submissions that keep failing pause allocation until `labsweep slurm --resume-alloc`.
 * Run `npm run build` first.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { laptopPage, launchBrowser, screenshot } from "./helpers/browser.js";
import { runCli, startCli, tempDir, type Watched, watch, writeFile } from "./helpers/cli.js";
import { type SlurmCluster, slurmBinaries, useSlurmCluster } from "./helpers/slurmCluster.js";

const maybe = slurmBinaries() ? describe : describe.skip;

interface Served {
  dir: string;
  url: string;
  env: NodeJS.ProcessEnv;
  served: Watched;
}

async function serveSlurm(cluster: SlurmCluster, sweep: string, flags: string[]): Promise<Served> {
  const dir = tempDir("labsweep-slurm-alloc-");
  writeFile(dir, "sweep.yaml", sweep);
  const served = watch(
    startCli(
      [
        "serve",
        join(dir, "sweep.yaml"),
        "--port",
        "0",
        "--slurm",
        "--alloc-every",
        "1",
        "--output",
        join(dir, "slurm"),
        ...flags,
      ],
      { cwd: dir, env: cluster.env },
    ),
    600_000,
  );
  await served.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
  const url = (/^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(served.output()) as RegExpExecArray)[1] as string;
  const admin = (await runCli(["token", "--admin", "--state", join(dir, ".labsweep")])).stdout.trim();
  return { dir, url, served, env: { ...cluster.env, LABSWEEP_ADMIN_TOKEN: admin, LABSWEEP_TOKEN: admin } };
}

/** Opens the dashboard, checks the paused notice, and resumes through its form: a wrong token first. */
async function resumeOnDashboard(s: Served): Promise<void> {
  const viewer = (await runCli(["token", "--viewer", "--state", join(s.dir, ".labsweep")])).stdout.trim();
  const browser = await launchBrowser();
  const { page, errors } = await laptopPage(browser);
  await page.goto(`${s.url}/?token=${viewer}`);
  const notice = page.locator("#allocation-paused");
  await notice.waitFor({ timeout: 20_000 });
  expect(await notice.textContent()).toMatch(/Allocation paused since .*submission failed: .*nosuch/i);
  await screenshot(page, "slurm-allocation-paused");
  const token = page.locator("#allocation-paused input[type=password]");
  const said = page.locator("#allocation-paused [role=status]");
  await token.fill("not-the-admin-token");
  await page.locator("#allocation-paused button").click();
  await page.waitForFunction(() =>
    /^401/.test(document.querySelector("#allocation-paused [role=status]")?.textContent ?? ""),
  );
  expect(await token.inputValue()).toBe(""); // never kept
  await token.fill(s.env.LABSWEEP_ADMIN_TOKEN as string);
  await page.locator("#allocation-paused button").click();
  await said.filter({ hasText: "resumed" }).waitFor({ timeout: 10_000 });
  const after = JSON.parse((await runCli(["status", "--server", s.url, "--json"], { env: s.env })).stdout);
  expect(after.allocation.paused).toBeNull();
  // Console errors: the 401 is the page's own fetch, reported by Chromium as a failed resource.
  expect(errors.filter((error) => !/401/.test(error))).toEqual([]);
  await browser.close();
}

function lines(dir: string, file: string): string[] {
  const path = join(dir, file);
  return existsSync(path) ? readFileSync(path, "utf8").split("\n").filter(Boolean) : [];
}

async function until<T>(what: string, timeoutMs: number, look: () => Promise<T | null>, diag: () => string) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await look();
    if (found !== null) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${diag()}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

maybe("serve --slurm on a real SLURM", () => {
  const cluster = useSlurmCluster({ cpus: 4 });

  it("submits agent jobs while tasks wait, never more than --max-jobs, and they end with the work", async () => {
    const c = cluster();
    const sweep = `command: sleep 1 && echo {x} >> ran.txt
p:
  combinations:
    - x: [${Array.from({ length: 12 }, (_, i) => i).join(", ")}]
`;
    const s = await serveSlurm(c, sweep, [
      "--max-jobs",
      "3",
      "--slots",
      "1",
      "--cpus-per-task",
      "1",
      "--idle-exit",
      "2",
    ]);
    const diag = () => `${s.served.output()}\n${c.logs()}`;
    try {
      let most = 0;
      let grew = false;
      let listed = "";
      await until(
        "every task to run",
        180_000,
        async () => {
          const active = (await c.jobs()).filter((row) =>
            ["PENDING", "RUNNING", "CONFIGURING"].includes(row.state),
          );
          most = Math.max(most, active.length);
          if (active.length > 1) grew = true;
          // `labsweep agents` lists the allocations with their job ids and states.
          if (!listed && active.some((row) => row.state === "RUNNING"))
            listed = (await runCli(["agents", "--server", s.url], { env: s.env })).stdout;
          return lines(s.dir, "ran.txt").length >= 12 ? true : null;
        },
        diag,
      );
      console.log(`serve --slurm: at most ${most} allocation(s) at once for 12 one-second tasks`);
      expect(grew, "more than one allocation at once").toBe(true);
      expect(most, "never above --max-jobs").toBeLessThanOrEqual(3);
      expect(listed).toMatch(/^slurm allocations: .*\(max 3, min 0, 1 slot\(s\) each\)$/m);
      expect(listed).toMatch(/^ {2}job \d+_\d+: (RUNNING|PENDING|CONFIGURING)/m);
      // Exactly once each.
      expect(
        lines(s.dir, "ran.txt")
          .map(Number)
          .sort((a, b) => a - b),
      ).toEqual(Array.from({ length: 12 }, (_, i) => i));
      // The work done, the allocations end: agents hear "done" (or idle out), pending ones are cancelled.
      await until(
        "the allocations to end",
        60_000,
        async () => {
          const active = (await c.jobs()).filter((row) =>
            ["PENDING", "RUNNING", "CONFIGURING", "COMPLETING"].includes(row.state),
          );
          return active.length === 0 ? true : null;
        },
        diag,
      );
      const agents = await runCli(["agents", "--server", s.url, "--json"], { env: s.env });
      expect(agents.code, agents.stderr).toBe(0);
      const allocation = JSON.parse(agents.stdout).allocation;
      expect(allocation).toMatchObject({ maxJobs: 3, paused: null });
      expect(s.served.output()).toMatch(/submitted \d+ agent allocation\(s\): job array \d+/);
    } finally {
      s.served.child.kill("SIGINT");
      await s.served.result;
    }
  }, 300_000);

  it("pauses allocation after failed submissions, says why, and resumes on --resume-alloc", async () => {
    const c = cluster();
    const s = await serveSlurm(c, "command: 'true'\np:\n  combinations:\n    - x: [1, 2]\n", [
      "--partition",
      "nosuch",
    ]);
    const diag = () => `${s.served.output()}\n${c.logs()}`;
    try {
      await until(
        "allocation to pause",
        90_000,
        async () => (/allocation paused after 3 failures/.test(s.served.output()) ? true : null),
        diag,
      );
      // The dashboard shows why, and its button resumes with the admin token typed in.
      await resumeOnDashboard(s);
      await until(
        "allocation to pause again",
        90_000,
        async () =>
          (s.served.output().match(/allocation paused after 3 failures/g) ?? []).length >= 2 ? true : null,
        diag,
      );
      const status = await runCli(["status", "--server", s.url], { env: s.env });
      expect(status.stdout).toMatch(
        /allocation PAUSED since .*submission failed: sbatch exited 1: .*nosuch/i,
      );
      const listed = await runCli(["agents", "--server", s.url], { env: s.env });
      expect(listed.stdout).toMatch(/slurm allocations: none \(max 4/);
      const resumed = await runCli(["slurm", "--resume-alloc", "--server", s.url], { env: s.env });
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(resumed.stdout).toMatch(/allocation resumed/);
      const after = JSON.parse(
        (await runCli(["status", "--server", s.url, "--json"], { env: s.env })).stdout,
      );
      expect(after.allocation.paused).toBeNull();
      // The agent token cannot resume it: the admin's alone.
      const token = (await runCli(["token", "--state", join(s.dir, ".labsweep")])).stdout.trim();
      const refused = await runCli(["slurm", "--resume-alloc", "--server", s.url], {
        env: { ...s.env, LABSWEEP_ADMIN_TOKEN: "", LABSWEEP_TOKEN: token },
      });
      expect(refused.code).not.toBe(0);
    } finally {
      s.served.child.kill("SIGINT");
      await s.served.result;
    }
  }, 240_000);
});
