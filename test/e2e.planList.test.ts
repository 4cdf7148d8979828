/**
 * End to end: `labsweep plan --list` shows every unique task with its phase, parameters and full
 * command line — launcher wrapping included, `<port>` for a port picked when the task starts —
 * and `--json` gives one object per task per line; nothing is written. A reader that stops
 * early (`| head -1`) ends it quietly. Run `npm run build` first.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CLI, runCli, tempDir, writeFile } from "./helpers/cli.js";

const SWEEP = `command: python train.py --lr {lr} --name {name}
defaults: {name: "it's a test"}
ddp:
  launcher: torchrun
  resources: {gpus: 2}
  output_dir: out/ddp
  combinations:
    - lr: [0.1, 0.2]
acc:
  launcher: {name: accelerate, mixed_precision: bf16}
  resources: {gpus: 0.5}
  output_dir: out/acc
  combinations:
    - lr: [0.3]
plain:
  launcher: none
  output_dir: out/plain
  combinations:
    - lr: [0.1, 0.4]
`;

describe("labsweep plan --list", () => {
  it("prints each task's phase, parameters and launcher command line; --json one object a line", async () => {
    const dir = tempDir();
    const config = writeFile(dir, "sweep.yaml", SWEEP);
    const text = await runCli(["plan", "--list", config], { cwd: dir });
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toBe(
      [
        "#1 ddp: name=it's a test lr=0.1",
        "  torchrun --nnodes 1 --node_rank 0 --nproc_per_node 2 --master_addr 127.0.0.1 --master_port <port> train.py --lr 0.1 --name 'it'\\''s a test'",
        "#2 ddp: name=it's a test lr=0.2",
        "  torchrun --nnodes 1 --node_rank 0 --nproc_per_node 2 --master_addr 127.0.0.1 --master_port <port> train.py --lr 0.2 --name 'it'\\''s a test'",
        "#3 acc: name=it's a test lr=0.3",
        "  accelerate launch --num_processes 1 --gpu_ids all --mixed_precision bf16 train.py --lr 0.3 --name 'it'\\''s a test'",
        // lr 0.1 of plain is ddp's first task (the launcher is not identity): listed once.
        "#4 plain: name=it's a test lr=0.4",
        "  python train.py --lr 0.4 --name 'it'\\''s a test'",
        "",
      ].join("\n"),
    );

    const json = await runCli(["plan", "--list", "--json", config], { cwd: dir });
    expect(json.code, json.stderr).toBe(0);
    const tasks = json.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(tasks.map((task) => [task.n, task.phase, task.params.lr, task.gpus, task.id])).toEqual([
      [1, "ddp", 0.1, 2, null],
      [2, "ddp", 0.2, 2, null],
      [3, "acc", 0.3, 0.5, null],
      [4, "plain", 0.4, null, null],
    ]);
    expect(tasks[3].command).toBe("python train.py --lr 0.4 --name 'it'\\''s a test'");
    expect(tasks[0].signature).toMatch(/^[\w-]{22}$/);
    // Planning writes nothing: no state dir, no output dirs.
    expect(existsSync(join(dir, ".labsweep"))).toBe(false);
    expect(existsSync(join(dir, "out"))).toBe(false);
  });

  it("ends quietly when its reader stops early", () => {
    const dir = tempDir();
    const axis = Array.from({ length: 300 }, (_, i) => i).join(", ");
    const config = writeFile(
      dir,
      "big.yaml",
      `command: echo {a} {b}\nexp:\n  combinations:\n    - a: [${axis}]\n    - b: [${axis}]\n`,
    );
    const piped = spawnSync(
      "sh",
      ["-c", `"${process.execPath}" "${CLI}" plan --list "${config}" | head -1; echo "status=$?"`],
      {
        encoding: "utf8",
        timeout: 60_000,
      },
    );
    expect(piped.stdout).toBe("#1 exp: a=0 b=0\nstatus=0\n");
    expect(piped.stderr).toBe("");
  });
});
