/**
 * A phase's `env:` as a task gets it: rendered from the ledger row's declared parameters (so an
 * out-of-memory retry keeps its run id and group), laid under labsweep's own variables, a
 * PYTHONPATH kept with the Python client added.
 */
import { delimiter } from "node:path";
import { describe, expect, it } from "vitest";
import { PYTHON_CLIENT_DIR } from "../src/agent/pythonClient.js";
import { taskVariables } from "../src/agent/taskFiles.js";
import { type TaskRow, toTask } from "../src/ledger/rows.js";
import type { Lease } from "../src/protocol/interfaces.js";
import { taskGroup } from "../src/sweep/envSetting.js";
import type { RunPolicy } from "../src/sweep/types.js";

const COMMAND = "python3 train.py --bs {bs} --seed {seed}";

function row(policy: Partial<RunPolicy>, oomValue: number | null): TaskRow {
  return {
    id: 7,
    signature: "sig-of-task-7-aaaaaaaa",
    params_json: JSON.stringify({ bs: 64, seed: 3 }),
    command: "python3 train.py --bs 64 --seed 3",
    phase: "train",
    cwd: "/tmp",
    config_file: "/tmp/sweep.yaml",
    policy_json: JSON.stringify({ retries: 0, timeoutMs: null, backoffMs: 0, resources: {}, ...policy }),
    state: "pending",
    runnable: 1,
    attempts: 1,
    losses: 0,
    not_before: 0,
    attempt_id: null,
    active: 1,
    result_json: null,
    wall_seconds: null,
    host: null,
    gpu_ids: null,
    finished_at: null,
    origin: null,
    oom_value: oomValue,
    oom_retries: oomValue === null ? 0 : 1,
  };
}

const ENV = {
  vars: { RUN: "{signature}", GROUP: "{group}", NAME: "{phase}-{task_id}-bs{bs}", PYTHONPATH: "src" },
  commandTemplate: COMMAND,
};

describe("a task's env", () => {
  it("is rendered from the declared parameters, an out-of-memory retry's too", () => {
    const onOom = { param: "bs", factor: 0.5, min: 1, commandTemplate: COMMAND };
    const first = toTask(row({ env: ENV, onOom }, null));
    const shrunk = toTask(row({ env: ENV, onOom }, 32));
    expect(shrunk.params.bs).toBe(32);
    expect(shrunk.env).toEqual(first.env);
    expect(first.env).toEqual({
      RUN: "sig-of-task-7-aaaaaaaa",
      GROUP: taskGroup({ bs: 64 }, COMMAND),
      NAME: "train-7-bs64",
      PYTHONPATH: "src",
    });
  });

  it("is absent without one", () => {
    expect(toTask(row({}, null))).not.toHaveProperty("env");
  });

  it("reaches the process under labsweep's own variables, its PYTHONPATH kept", () => {
    const task = toTask(row({ env: ENV }, null));
    const lease: Lease = { task, attemptId: 1, attemptNumber: 1, gpuIds: [], placements: [] };
    const files = {
      dir: "/s/tasks/7",
      logPath: "/s/tasks/7/log",
      resultPath: "/s/tasks/7/result.json",
      eventsPath: "/s/tasks/7/events.jsonl",
      stopPath: "/s/tasks/7/stop",
      workDir: "/s/work/0",
      configPath: "/s/configs/0.json",
    };
    const env = taskVariables(lease, files, {
      stateDir: "/s",
      onGpuMachine: false,
      inherited: { PYTHONPATH: "/agent/lib" },
    });
    expect(env.RUN).toBe("sig-of-task-7-aaaaaaaa");
    expect(env.NAME).toBe("train-7-bs64");
    expect(env.PYTHONPATH).toBe(`${PYTHON_CLIENT_DIR}${delimiter}src`);
    expect(env.LABSWEEP_TASK_SIGNATURE).toBe("sig-of-task-7-aaaaaaaa");
  });
});
