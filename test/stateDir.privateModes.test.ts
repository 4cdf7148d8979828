/**
 * Files other users can read: under `umask 000`, `labsweep run`, `serve` and `agent` still leave
 * every dir of their state dirs 0700 and every file 0600 — the ledger, tokens, task logs, configs,
 * results, the outbox, the lock. Real processes; run `npm run build` first.
 */
import { spawn } from "node:child_process";
import { lstatSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CLI, type CliResult, collect, tempDir, watch, writeFile } from "./helpers/cli.js";
import { fakeGpuEnv } from "./helpers/fakeGpus.js";

const SWEEP = `retries: 0
main:
  command: "echo out {x}; echo '{\\"acc\\": {x}}' > \\"$LABSWEEP_RESULT_FILE\\"; test {x} -lt 3"
  output_dir: out
  combinations:
    - x: [1, 2, 3]
`;

const ENV = { ...fakeGpuEnv([]), LABSWEEP_TOKEN: "", LABSWEEP_SERVER: "", LABSWEEP_STORE: "" };

/** `labsweep ARGS` started by a shell that set `umask 000` first. */
function underUmask000(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) {
  return spawn("sh", ["-c", 'umask 000; exec "$@"', "sh", process.execPath, CLI, ...args], {
    cwd,
    env: { ...process.env, ...ENV, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** Every path under `dir` (itself included) whose mode lets anyone but its owner in. */
function exposed(dir: string): string[] {
  const found: string[] = [];
  const visit = (path: string): void => {
    const stat = lstatSync(path);
    const mode = stat.mode & 0o777;
    if (stat.isDirectory()) {
      if (mode !== 0o700) found.push(`${path} (dir ${mode.toString(8)})`);
      for (const name of readdirSync(path)) visit(join(path, name));
    } else if (mode !== 0o600) found.push(`${path} (${mode.toString(8)})`);
  };
  visit(dir);
  return found;
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" });
}

function expectExit(result: CliResult, code: number): void {
  expect(result.code, `stdout: ${result.stdout}\nstderr: ${result.stderr}`).toBe(code);
}

describe("state dirs under umask 000", () => {
  it("`labsweep run` keeps its state dir 0700 and every file in it 0600", async () => {
    const dir = tempDir();
    writeFile(dir, "sweep.yaml", SWEEP);
    const stateDir = join(dir, "state");
    const result = await collect(
      underUmask000(["run", "sweep.yaml", "--state", stateDir, "--slots", "2"], dir),
      60_000,
    );
    expectExit(result, 1); // x = 3 fails on purpose: failed_experiments.csv is written too
    const files = filesUnder(stateDir);
    for (const expected of ["ledger.sqlite", "run.lock", "tokens.json", "failed_experiments.csv"])
      expect(files, expected).toContain(expected);
    expect(files.some((name) => /^tasks\/\d+\/attempt-1\.log$/.test(name))).toBe(true);
    expect(files.some((name) => /^tasks\/\d+\/attempt-1\.result\.json$/.test(name))).toBe(true);
    expect(exposed(stateDir)).toEqual([]);
  });

  it("`labsweep serve` and `labsweep agent` keep theirs private too (ledger, logs, outbox, results)", async () => {
    const dir = tempDir();
    writeFile(dir, "sweep.yaml", SWEEP.replace("test {x} -lt 3", "true"));
    const serverState = join(dir, "server-state");
    const agentState = join(dir, "agent-state");
    const served = watch(
      underUmask000(["serve", "sweep.yaml", "--state", serverState, "--port", "0", "--exit-when-done"], dir),
    );
    await served.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
    const url = (/^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(served.output()) as RegExpExecArray)[1] as string;
    const token = JSON.parse(readFileSync(join(serverState, "tokens.json"), "utf8")).agent as string;
    const agent = await collect(
      underUmask000(["agent", "--server", url, "--state", agentState, "--slots", "2"], dir, {
        LABSWEEP_TOKEN: token,
        LABSWEEP_GPU_LOCK_DIR: tempDir(),
      }),
      60_000,
    );
    expectExit(agent, 0);
    expectExit(await served.result, 0);
    expect(filesUnder(agentState).some((name) => /^tasks\/\d+\/attempt-1\.log$/.test(name))).toBe(true);
    expect(filesUnder(agentState)).toContain("agent.json");
    expect(filesUnder(serverState)).toContain("ledger.sqlite");
    expect(exposed(serverState)).toEqual([]);
    expect(exposed(agentState)).toEqual([]);
  });
});
