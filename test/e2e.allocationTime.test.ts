/**
 * An agent in a SLURM allocation leases only tasks whose timeout fits in the time it has left,
 * and leaves (releasing the allocation) once what is left needs more; `--idle-exit` ends an agent
 * that has had no work for that long. Real `serve` and `agent` over loopback HTTP; the allocation's
 * end comes the way SLURM 23.02+ gives it, in SLURM_JOB_ID / SLURM_JOB_END_TIME. Run `npm run build` first.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runCli, startCli, tempDir, watch, writeFile } from "./helpers/cli.js";

async function serve(dir: string, config: string) {
  const served = watch(startCli(["serve", config, "--port", "0"], { cwd: dir }));
  await served.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
  const url = (/^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(served.output()) as RegExpExecArray)[1] as string;
  const token = (await runCli(["token", "--state", join(dir, ".labsweep")])).stdout.trim();
  return { served, url, token };
}

function ran(dir: string): string[] {
  const path = join(dir, "ran.txt");
  return existsSync(path) ? readFileSync(path, "utf8").split("\n").filter(Boolean).sort() : [];
}

describe("an agent's allocation time", () => {
  it("leases only tasks whose timeout ends before the allocation does, then leaves", async () => {
    const dir = tempDir();
    const config = writeFile(
      dir,
      "sweep.yaml",
      `command: echo {phase_name}-{x} >> ran.txt
short:
  timeout: 60s
  defaults: {phase_name: short}
  combinations:
    - x: [1, 2]
long:
  timeout: 2h
  defaults: {phase_name: long}
  combinations:
    - x: [1]
`,
    );
    const { served, url, token } = await serve(dir, config);
    try {
      // Ten minutes left, SIGTERM two minutes before the end: 8 min for tasks.
      const endsAt = Math.floor(Date.now() / 1000) + 600;
      const agent = await runCli(
        ["agent", "--server", url, "--state", join(dir, "agent"), "--slots", "1", "--stop-before", "120"],
        {
          cwd: dir,
          env: { LABSWEEP_TOKEN: token, SLURM_JOB_ID: "4242", SLURM_JOB_END_TIME: String(endsAt) },
        },
      );
      expect(agent.code, agent.stderr).toBe(0);
      expect(agent.stderr).toMatch(/this allocation ends at/);
      expect(agent.stderr).toMatch(/needs up to 2\.0 h \(its timeout\); this allocation has \d+ min left/);
      expect(ran(dir)).toEqual(["short-1", "short-2"]);
      const status = JSON.parse((await runCli(["status", config, "--json"], { cwd: dir })).stdout);
      expect(status.phases.find((phase: { name: string }) => phase.name === "long")).toMatchObject({
        pending: 1,
      });
      // An agent with time enough runs it.
      const roomy = await runCli(["agent", "--server", url, "--state", join(dir, "agent2"), "--slots", "1"], {
        cwd: dir,
        env: { LABSWEEP_TOKEN: token },
      });
      expect(roomy.code, roomy.stderr).toBe(0);
      expect(ran(dir)).toEqual(["long-1", "short-1", "short-2"]);
    } finally {
      served.child.kill("SIGTERM");
      await served.result;
    }
  });

  it("--idle-exit ends an agent that has had no work for that long, with exit code 0", async () => {
    const dir = tempDir();
    const config = writeFile(dir, "sweep.yaml", "command: 'true'\np:\n  combinations:\n    - x: [1, 2]\n");
    // A paused sweep: tasks wait, so an agent without --idle-exit would wait with them.
    const { served, url, token } = await serve(dir, config);
    try {
      const paused = await runCli(["pause", config], { cwd: dir });
      expect(paused.code, paused.stderr).toBe(0);
      const started = Date.now();
      const agent = await runCli(
        ["agent", "--server", url, "--state", join(dir, "agent"), "--slots", "1", "--idle-exit", "1"],
        { cwd: dir, env: { LABSWEEP_TOKEN: token } },
      );
      expect(agent.code, agent.stderr).toBe(0);
      expect(agent.stderr).toMatch(/no task has run here for \d+ s \(--idle-exit\); exiting/);
      expect(Date.now() - started).toBeLessThan(15_000);
      const listed = await runCli(["agents", "--server", url, `--token=${token}`, "--json"]);
      expect(JSON.parse(listed.stdout).agents).toMatchObject([{ state: "exited" }]);
      expect(JSON.parse(listed.stdout).allocation).toBeNull();
    } finally {
      served.child.kill("SIGTERM");
      await served.result;
    }
  });

  it("serve --slurm refuses what it cannot do before serving anything: exit 2, one line, no state", async () => {
    const dir = tempDir();
    const config = writeFile(dir, "sweep.yaml", "command: 'true'\np:\n  combinations:\n    - x: [1]\n");
    const cases: Array<[string[], NodeJS.ProcessEnv, RegExp]> = [
      [
        ["--slurm"],
        { PATH: join(dir, "nothing-here") },
        /--slurm needs SLURM's sbatch, squeue, scancel on PATH/,
      ],
      [
        ["--slurm", "--min-jobs", "5", "--max-jobs", "2"],
        {},
        /--min-jobs \(5\) cannot be more than --max-jobs \(2\)/,
      ],
      [["--slurm", "--max-jobs", "0"], {}, /--max-jobs must be a positive whole number/],
      [["--slurm", "--idle-exit", "soon"], {}, /--idle-exit must be a number of seconds/],
    ];
    for (const [flags, env, message] of cases) {
      // A fake sbatch & co. where the case is not about them: the check comes before any use.
      const path = env.PATH ?? `${fakeSlurm(dir)}:${process.env.PATH}`;
      const result = await runCli(["serve", config, "--port", "0", ...flags], {
        cwd: dir,
        env: { PATH: path },
      });
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr.trim().split("\n")).toHaveLength(1);
      expect(result.stderr).toMatch(message);
      expect(existsSync(join(dir, ".labsweep"))).toBe(false);
    }
  });
});

/** A dir with sbatch, squeue and scancel that fail if run: only their presence is checked. */
function fakeSlurm(dir: string): string {
  const bin = join(dir, "fake-slurm");
  mkdirSync(bin, { recursive: true });
  for (const name of ["sbatch", "squeue", "scancel"]) {
    writeFileSync(join(bin, name), "#!/bin/sh\nexit 1\n");
    chmodSync(join(bin, name), 0o755);
  }
  return bin;
}
