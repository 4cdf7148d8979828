import { pythonEntry } from "../sweep/launcher.js";
import { shellQuoteText } from "../sweep/template.js";
import type { LauncherSpec } from "../sweep/types.js";

export interface LaunchOptions {
  /**
   * The port for a launcher whose port is `auto` (see `needsFreePort` and `freePort`); a string
   * is written as is (`labsweep plan --list` shows `<port>`).
   */
  port?: number | string | undefined;
}

/**
 * The shell command that starts a task: its rendered command as is without a launcher, else
 * `accelerate launch …` or `torchrun …` with one process per GPU in `gpuIds` (one on the CPU)
 * followed by the script (or `-m module`) and its arguments, a leading `python`/`python3`
 * dropped. Pure: the caller picks any free port and passes it in `options.port`.
 *
 * The command's own text is already shell-quoted by the template renderer; `extra_args` are
 * quoted here, so each arrives as exactly one argument.
 */
export function launchCommand(
  command: string,
  launcher: LauncherSpec | null,
  gpuIds: readonly number[],
  options: LaunchOptions = {},
): string {
  if (launcher === null) return command;
  const entry = pythonEntry(command);
  if (entry === null) {
    throw new Error(
      `launcher ${launcher.name} needs a command that starts with a Python script or -m module, got ${JSON.stringify(command.slice(0, 80))}`,
    );
  }
  const processes = Math.max(1, gpuIds.length);
  const words: string[] = [];
  if (launcher.name === "accelerate") {
    words.push("accelerate", "launch", "--num_processes", String(processes));
    // The agent has already set CUDA_VISIBLE_DEVICES to the task's GPUs, so inside the task
    // they are the visible devices 0..n-1. accelerate turns --gpu_ids into CUDA_VISIBLE_DEVICES
    // for its processes, replacing ours: listing the visible indices ("0,1") would move a task
    // given physical GPUs 2,3 onto GPUs 0,1 (another task's), and the physical ids would only
    // repeat what is already set. `all` selects every visible device, i.e. exactly the task's
    // GPUs, and, given on the command line, overrides any gpu_ids in the user's accelerate
    // config file. On the CPU (no GPU allocated) `--cpu` runs one process there.
    if (gpuIds.length === 0) words.push("--cpu");
    else words.push("--gpu_ids", "all");
    if (launcher.mixedPrecision !== null) words.push("--mixed_precision", launcher.mixedPrecision);
    // A single process meets no one: no port, no multi-GPU mode.
    if (processes > 1) {
      words.push("--main_process_port", String(portOf(launcher.mainProcessPort, options.port)));
      words.push("--multi_gpu");
    }
  } else {
    // One node, its rendezvous pinned to 127.0.0.1 on a port of the task's own. Not
    // --standalone: before torch 2.1 it always binds port 29400, so two tasks on one machine
    // collide, and it sets MASTER_ADDR to the host name, which need not resolve to loopback.
    // Underscore spellings: torch 1.13 knows only those, 2.x accepts them beside the dashed ones.
    words.push("torchrun", "--nnodes", "1", "--node_rank", "0", "--nproc_per_node", String(processes));
    words.push(
      "--master_addr",
      "127.0.0.1",
      "--master_port",
      String(portOf(launcher.masterPort, options.port)),
    );
  }
  for (const arg of launcher.extraArgs) words.push(shellQuoteText(arg));
  return `${words.join(" ")} ${entry}`;
}

/** Whether `launchCommand` needs `options.port` for this launcher and these GPUs. */
export function needsFreePort(launcher: LauncherSpec | null, gpuIds: readonly number[]): boolean {
  if (launcher === null) return false;
  if (launcher.name === "accelerate") return launcher.mainProcessPort === "auto" && gpuIds.length > 1;
  return launcher.masterPort === "auto";
}

function portOf(setting: number | "auto", picked: number | string | undefined): number | string {
  if (setting !== "auto") return setting;
  if (picked === undefined) throw new Error("the launcher's port is auto, but no free port was passed");
  return picked;
}
