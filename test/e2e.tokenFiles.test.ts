/**
 * Tokens that never go through argv: `serve --tokens-file`, `agent --token-file`, and
 * `serve --trust-loopback` for tokenless reads from this machine. The built CLI, end to end.
 */
import { chmodSync, existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type CliResult, runCli, startCli, tempDir, watch, writeFile } from "./helpers/cli.js";
import { fakeGpuEnv } from "./helpers/fakeGpus.js";

const CLEAN_ENV = {
  LABSWEEP_AGENT_TOKEN: "",
  LABSWEEP_VIEWER_TOKEN: "",
  LABSWEEP_ADMIN_TOKEN: "",
  LABSWEEP_TOKEN: "",
  LABSWEEP_SERVER: "",
};
const TOKENS = { agent: "file-agent-7d1e0c", viewer: "file-viewer-2b9a44", admin: "file-admin-5f3c81" };
const SWEEP =
  "retries: 0\nmain:\n  command: echo hi {x}\n  output_dir: out\n  combinations:\n    - x: [1, 2]\n";

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return runCli(args, { env: { ...CLEAN_ENV, ...env }, timeoutMs: 30_000 });
}

describe("token files", () => {
  it("serves with --tokens-file and --trust-loopback; an agent takes --token-file", async () => {
    const dir = tempDir();
    writeFile(dir, "sweep.yaml", SWEEP);
    const tokensFile = join(dir, "tokens-in.json");
    writeFileSync(tokensFile, JSON.stringify(TOKENS), { mode: 0o600 });
    const served = watch(
      startCli(
        [
          "serve",
          "sweep.yaml",
          "--port",
          "0",
          "--tokens-file",
          tokensFile,
          "--trust-loopback",
          "--exit-when-done",
        ],
        {
          cwd: dir,
          env: CLEAN_ENV,
        },
      ),
    );
    await served.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
    const url = (/^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(served.output()) as RegExpExecArray)[1] as string;
    const state = join(dir, ".labsweep");

    // Trusted loopback: reads need no token; changes still need the admin token.
    const [status, admin, cancel] = await Promise.all([
      cli(["status", "--server", url, "--json"]),
      cli(["token", "--state", state, "--admin"]),
      cli(["cancel", "99", "--server", url]),
    ]);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ unique: 2 });
    expect(admin.stdout).toBe(`${TOKENS.admin}\n`);
    expect(cancel.code).toBe(2);
    expect(cancel.stderr).toContain("needs the admin token");

    const agentTokenFile = join(dir, "agent.token");
    writeFileSync(agentTokenFile, `${TOKENS.agent}\n`, { mode: 0o600 });
    const agent = await cli(
      [
        "agent",
        "--server",
        url,
        "--token-file",
        agentTokenFile,
        "--slots",
        "2",
        "--state",
        join(dir, "agent"),
      ],
      { ...fakeGpuEnv([]), LABSWEEP_GPU_LOCK_DIR: tempDir() },
    );
    expect(agent.code, agent.stderr).toBe(0);
    const result = await served.result;
    expect(result.code, result.stderr).toBe(0);
    for (const token of Object.values(TOKENS)) {
      expect(result.stderr + result.stdout).not.toContain(token);
      expect(agent.stderr + agent.stdout).not.toContain(token);
    }
  });

  it("refuses a tokens file other users can read, before touching the ledger", async () => {
    const dir = tempDir();
    writeFile(dir, "sweep.yaml", SWEEP);
    const tokensFile = join(dir, "tokens-in.json");
    writeFileSync(tokensFile, JSON.stringify(TOKENS));
    chmodSync(tokensFile, 0o644);
    const result = await cli(["serve", join(dir, "sweep.yaml"), "--port", "0", "--tokens-file", tokensFile]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^labsweep: the tokens file .*tokens-in\.json can be read by other users/);
    expect(existsSync(join(dir, ".labsweep"))).toBe(false);
    const missing = await cli(["agent", "--server", "http://127.0.0.1:9", "--token-file", join(dir, "nope")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^labsweep: cannot read the token file .*nope: ENOENT/);
  });
});
