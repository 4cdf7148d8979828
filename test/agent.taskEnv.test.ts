/**
 * A task's environment carries no labsweep credential: no token, and not LABSWEEP_STORE, whose
 * `postgres://USER:PASSWORD@…` opens the ledger itself. A task runs whatever its config says, and
 * tools that record their environment would carry them off. Real `labsweep run`, a real task
 * dumping its environment; run `npm run build` first.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runCli, tempDir, writeFile } from "./helpers/cli.js";

describe("a task's environment", () => {
  it("holds no labsweep token and no store URL, and everything else the run had", async () => {
    const dir = tempDir();
    writeFile(dir, "task.py", 'import json, os\njson.dump(dict(os.environ), open("env.json", "w"))\n');
    const config = writeFile(
      dir,
      "sweep.yaml",
      "command: python3 task.py {x}\np:\n  combinations:\n    - x: [1]\n",
    );
    const result = await runCli(["run", config, "--no-dashboard"], {
      cwd: dir,
      env: {
        LABSWEEP_STORE: `sqlite:${join(dir, "ledger.sqlite")}`,
        LABSWEEP_TOKEN: "agent-secret",
        LABSWEEP_ADMIN_TOKEN: "admin-secret",
        LABSWEEP_VIEWER_TOKEN: "viewer-secret",
        MY_SETTING: "kept",
      },
    });
    expect(result.code, result.stderr).toBe(0);
    const env = JSON.parse(readFileSync(join(dir, "env.json"), "utf8")) as Record<string, string>;
    expect(env.MY_SETTING).toBe("kept");
    expect(env.LABSWEEP_TASK_ID).toMatch(/^\d+$/);
    const leaked = Object.keys(env).filter((key) => /TOKEN|STORE/i.test(key) && key.startsWith("LABSWEEP_"));
    expect(leaked).toEqual([]);
    expect(JSON.stringify(env)).not.toMatch(/secret|ledger\.sqlite/);
  });
});
