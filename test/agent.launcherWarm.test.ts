/**
 * `run` and `agent` start the launcher before their first task (Launcher.warm), so python3's
 * start overlaps theirs; a warm launcher with no task must not keep the process alive.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "./helpers/cli.js";

const launcher = join(REPO_ROOT, "dist/agent/launcher.js");

function node(script: string): ReturnType<typeof spawnSync> {
  return spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    encoding: "utf8",
    timeout: 20_000,
  });
}

describe("a warm launcher", () => {
  it("is running before the first task, which starts through it", () => {
    const run = node(`
      import { sharedLauncher } from ${JSON.stringify(launcher)};
      const launcher = sharedLauncher();
      launcher.warm();
      const pid = launcher.child?.pid;
      const launched = launcher.launch({ command: "echo hi", cwd: "/tmp", env: process.env, logPath: "/dev/null" });
      const code = (await launched.exit).code;
      console.log(JSON.stringify({ warm: pid > 0, same: launcher.child?.pid === pid, code }));
    `);
    expect(run.status, String(run.stderr)).toBe(0);
    expect(JSON.parse(String(run.stdout))).toEqual({ warm: true, same: true, code: 0 });
  });

  it("does not hold the event loop while no task runs", () => {
    const run = node(`
      import { sharedLauncher } from ${JSON.stringify(launcher)};
      sharedLauncher().warm();
      console.log("warmed");
    `);
    // A held loop would run into spawnSync's timeout (status null, SIGTERM).
    expect(run.signal).toBeNull();
    expect(run.status).toBe(0);
    expect(String(run.stdout)).toBe("warmed\n");
  });
});
