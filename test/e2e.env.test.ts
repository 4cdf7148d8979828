/**
 * End to end: a phase's `env:` reaches each task's process through `labsweep run` — run ids
 * equal to signatures, groups shared by the seeds of one configuration, the same run id on a
 * retry, and a hostile parameter value set as plain text, never run by a shell.
 * Run `npm run build` first: these tests run bin/labsweep.js, which runs dist/.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Database } from "../src/ledger/sqliteDriver.js";
import { taskGroup } from "../src/sweep/envSetting.js";
import type { Params } from "../src/sweep/types.js";
import { runCli, startCli, tempDir, watch, writeFile } from "./helpers/cli.js";

interface TaskRow {
  signature: string;
  params_json: string;
}

function tasksOf(dir: string): TaskRow[] {
  const db = new Database(join(dir, ".labsweep", "ledger.sqlite"), { readonly: true });
  try {
    return db.prepare("SELECT signature, params_json FROM tasks ORDER BY id").all() as TaskRow[];
  } finally {
    db.close();
  }
}

async function run(dir: string): Promise<void> {
  const result = await runCli(["run", join(dir, "sweep.yaml")], { cwd: dir });
  expect(result.code, `labsweep exited ${result.code}:\n${result.stderr}`).toBe(0);
}

function lines(path: string): string[][] {
  return readFileSync(path, "utf8")
    .trim()
    .split("\n")
    .map((line) => line.split(" "));
}

describe("env reaches the task's process", () => {
  it("sets run ids to signatures and groups the seeds of one configuration", async () => {
    const dir = tempDir();
    const command = `sh -c 'echo "$WANDB_RUN_ID $WANDB_RUN_GROUP $WANDB_RESUME {lr} {seed}" >> out.txt'`;
    writeFile(
      dir,
      "sweep.yaml",
      [
        `command: ${JSON.stringify(command)}`,
        "env: {WANDB_RESUME: allow}",
        "train:",
        "  combinations:",
        "    - lr: [0.1, 0.01]",
        "    - seed: [1, 2]",
        "  env:",
        '    WANDB_RUN_ID: "{signature}"',
        '    WANDB_RUN_GROUP: "{group}"',
        "",
      ].join("\n"),
    );
    await run(dir);
    const seen = lines(join(dir, "out.txt"));
    expect(seen).toHaveLength(4);
    const tasks = tasksOf(dir);
    for (const task of tasks) {
      const params = JSON.parse(task.params_json) as Params;
      const line = seen.find((words) => words[3] === String(params.lr) && words[4] === String(params.seed));
      expect(line).toEqual([
        task.signature,
        taskGroup(params, command),
        "allow",
        String(params.lr),
        String(params.seed),
      ]);
    }
    const groupOf = (lr: string, seed: string) => seen.find((w) => w[3] === lr && w[4] === seed)?.[1];
    expect(groupOf("0.1", "1")).toBe(groupOf("0.1", "2"));
    expect(groupOf("0.01", "1")).toBe(groupOf("0.01", "2"));
    expect(groupOf("0.1", "1")).not.toBe(groupOf("0.01", "1"));
    expect(new Set(seen.map((words) => words[0])).size).toBe(4);
  }, 90_000);

  it("gives a retried task the same run id on both attempts; a hostile value stays text", async () => {
    const dir = tempDir();
    writeFile(
      dir,
      "task.sh",
      [
        'echo "$WANDB_RUN_ID" >> attempts.txt',
        'printf "%s" "$RUN_NAME" > name.txt',
        "if [ ! -f marker ]; then touch marker; exit 1; fi",
        "",
      ].join("\n"),
    );
    writeFile(
      dir,
      "sweep.yaml",
      [
        "command: sh task.sh {name}",
        "retries: 1",
        "backoff: 0.1s",
        "flaky:",
        `  defaults: {name: "x'; touch pwned; $(touch pwned2) \`touch pwned3\`"}`,
        "  env:",
        '    WANDB_RUN_ID: "{signature}"',
        '    RUN_NAME: "{name}"',
        "",
      ].join("\n"),
    );
    await run(dir);
    const [task] = tasksOf(dir);
    expect(lines(join(dir, "attempts.txt"))).toEqual([[task?.signature], [task?.signature]]);
    expect(readFileSync(join(dir, "name.txt"), "utf8")).toBe(
      "x'; touch pwned; $(touch pwned2) `touch pwned3`",
    );
    for (const file of ["pwned", "pwned2", "pwned3"]) expect(existsSync(join(dir, file))).toBe(false);
  }, 90_000);

  it("reaches a task run by a remote `labsweep agent` too", async () => {
    const dir = tempDir();
    writeFile(
      dir,
      "sweep.yaml",
      [
        `command: "sh -c 'echo \\"$WANDB_RUN_ID $WANDB_RUN_GROUP\\" >> out-{seed}.txt'"`,
        "train:",
        "  combinations:",
        "    - seed: [1, 2]",
        '  env: {WANDB_RUN_ID: "{signature}", WANDB_RUN_GROUP: "{group}"}',
        "",
      ].join("\n"),
    );
    const served = watch(
      startCli(["serve", join(dir, "sweep.yaml"), "--exit-when-done", "--trust-loopback", "--port", "0"], {
        cwd: dir,
      }),
    );
    await served.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
    const url = (/^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(served.output()) as RegExpExecArray)[1] as string;
    const token = (await runCli(["token", "--state", join(dir, ".labsweep")])).stdout.trim();
    const agent = watch(
      startCli(["agent", "--server", url, `--token=${token}`, "--state", join(dir, "agent"), "--grace", "1"]),
    );
    const [ra, rs] = await Promise.all([agent.result, served.result]);
    expect(ra.code, ra.stderr).toBe(0);
    expect(rs.code, rs.stderr).toBe(0);
    const tasks = tasksOf(dir);
    const seen = [1, 2].map((seed) => lines(join(dir, `out-${seed}.txt`))[0]);
    expect(seen).toEqual(tasks.map((task) => [task.signature, seen[0]?.[1]]));
    expect(seen[0]?.[1]).toMatch(/^[\w-]{22}$/);
  }, 90_000);
});
