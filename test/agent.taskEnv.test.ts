/**
 * A task's environment carries no labsweep credential: no token, and not LABSWEEP_STORE, whose
 * `postgres://USER:PASSWORD@…` opens the ledger itself. A task runs whatever its config says, and
 * tools that record their environment would carry them off. Real `labsweep run`, a real task
 * dumping its environment; run `npm run build` first.
 */
import { readFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT, runCli, tempDir, writeFile } from "./helpers/cli.js";

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

  it("names the task protocol's files and signal and puts the Python client first on PYTHONPATH", async () => {
    const dir = tempDir();
    writeFile(
      dir,
      "task.py",
      `import json, os
e = os.environ
seen = {"events_exists": os.path.exists(e["LABSWEEP_EVENTS_FILE"]), "result_exists": os.path.exists(e["LABSWEEP_RESULT_FILE"]),
        "stop_exists": os.path.exists(e["LABSWEEP_STOP_FILE"]),
        "task_dir_mode": oct(os.stat(os.path.dirname(e["LABSWEEP_RESULT_FILE"])).st_mode & 0o777),
        "checkpoint_mode": oct(os.stat(e["LABSWEEP_CHECKPOINT_DIR"]).st_mode & 0o777),
        "config_task_id": json.load(open(e["LABSWEEP_CONFIG_FILE"]))["task_id"]}
json.dump({"env": dict(e), "seen": seen}, open("env.json", "w"))
`,
    );
    const config = writeFile(
      dir,
      "sweep.yaml",
      "command: python3 task.py {x}\np:\n  combinations:\n    - x: [1]\n",
    );
    const result = await runCli(["run", config, "--no-dashboard"], {
      cwd: dir,
      env: { PYTHONPATH: "/opt/mine", LABSWEEP_TOKEN: "agent-secret" },
    });
    expect(result.code, result.stderr).toBe(0);
    const { env, seen } = JSON.parse(readFileSync(join(dir, "env.json"), "utf8")) as {
      env: Record<string, string>;
      seen: Record<string, unknown>;
    };
    const state = join(dir, ".labsweep");
    expect(env).toMatchObject({
      LABSWEEP_EVENTS_FILE: join(state, "tasks", "1", "attempt-1.events.jsonl"),
      LABSWEEP_STOP_FILE: join(state, "tasks", "1", "attempt-1.stop"),
      LABSWEEP_STOP_SIGNAL: "SIGTERM",
      LABSWEEP_CHECKPOINT_DIR: join(state, "checkpoints", env.LABSWEEP_TASK_SIGNATURE as string),
      PYTHONPATH: `${join(REPO_ROOT, "python")}${delimiter}/opt/mine`,
    });
    // The result and events files are the task's to create (in its private task dir); the
    // config is there to read while it runs.
    expect(seen).toEqual({
      events_exists: false,
      result_exists: false,
      stop_exists: false,
      task_dir_mode: "0o700",
      checkpoint_mode: "0o700",
      config_task_id: Number(env.LABSWEEP_TASK_ID),
    });
    expect(JSON.stringify(env)).not.toMatch(/secret/);
  });
});
