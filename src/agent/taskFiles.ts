import { readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { tightenFile } from "../files/privateFiles.js";
import type { AttemptFiles } from "../protocol/attemptFiles.js";
import { gpusWanted } from "../protocol/capacity.js";
import type { Lease, Task } from "../protocol/interfaces.js";
import { flattenMetrics } from "../protocol/metricNames.js";
import { DEFAULT_STOP_SIGNAL } from "../sweep/stopSignal.js";
import type { Placement } from "../sweep/types.js";
import { STATE_DIR_MARKER } from "./leftovers.js";
import { withPythonClient } from "./pythonClient.js";
import { parseResultJson } from "./resultJson.js";

/**
 * LABSWEEP_CHECKPOINT_DIR: one dir per task, by signature, the same for every attempt, so a
 * retried or preempted attempt resumes from what the last one saved. Its root: the agent's
 * `--checkpoint-root` (its own mount of shared storage wins on its machine), else the phase's
 * `checkpoint_root`, else `<agent state dir>/checkpoints` (this machine only).
 */
export function checkpointDir(stateDir: string, task: Task, agentRoot?: string): string {
  const root = agentRoot ?? task.policy.checkpointRoot ?? join(stateDir, "checkpoints");
  return join(resolve(root), task.signature);
}

/**
 * An attempt's files, its work dir (LABSWEEP_WORK_DIR) from the pool (workDirs.ts), and its
 * config file (LABSWEEP_CONFIG_FILE), which goes with the work dir (`<state>/configs/<n>.json`),
 * rewritten for each attempt that has the dir, so it costs no new file after the first.
 */
export interface TaskFiles extends AttemptFiles {
  workDir: string;
  configPath: string;
}

/**
 * The attempt's config file for LABSWEEP_CONFIG_FILE, written where its process is started
 * (runProcess.ts's `files`: by the launcher, beside the agent's event loop, where there is one).
 */
export function attemptConfigFile(
  files: TaskFiles,
  task: Task,
  attemptId: number,
  placements: Placement[] = [],
): { path: string; text: string } {
  return {
    path: files.configPath,
    text: `${JSON.stringify(attemptConfig(task, attemptId, placements), null, 2)}\n`,
  };
}

/**
 * What else the task protocol (docs/task-protocol.md) promises at the start: the task dir and
 * the checkpoint dir exist (`dirs`, 0700, parents too), and no result, events or stop file of an
 * earlier attempt with this number is there (`clear`: an attempt number repeats only for a new
 * ledger in an old state dir). Made by whoever starts the process, just before its log is opened
 * (runProcess.ts): the launcher, beside the agent's event loop, where there is one; on ext4
 * without a journal (these VMs) a mkdir walks past every inode deleted in the last 30 s, 1-2 ms
 * each. The result and events files are the task's to create (the Python client makes them
 * 0600; the agent tightens what a task made looser once it exits, see `tightenTaskFiles`): two
 * empty files per task were a fifth of a no-op task's cost.
 */
export function attemptDirs(
  files: AttemptFiles,
  checkpoint: string | undefined,
): { dirs: string[]; clear: string[] } {
  return {
    dirs: checkpoint === undefined ? [files.dir] : [files.dir, checkpoint],
    clear: [files.resultPath, files.eventsPath, files.stopPath],
  };
}

/**
 * Once the task has exited: its result and events files, which it created itself, made 0600 if
 * it made them looser (a shell's `>` under its umask). Their dir is 0700 all along, so no one
 * else could reach them meanwhile; this keeps every file at rest in a state dir its owner's.
 * Returns the error that stopped it (a file another user's, a dir unreadable), for the caller to
 * tell: its report must go out all the same.
 */
export function tightenTaskFiles(files: Pick<AttemptFiles, "resultPath" | "eventsPath">): Error | null {
  try {
    tightenFile(files.resultPath);
    tightenFile(files.eventsPath);
    return null;
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}

function attemptConfig(task: Task, attemptId: number, placements: Placement[]): object {
  return {
    task_id: task.id,
    signature: task.signature,
    attempt_id: attemptId,
    params: task.params,
    command: task.command,
    cwd: task.cwd,
    config_file: task.configFile,
    // Every phase and output dir the task belongs to; LABSWEEP_OUTPUT_DIR is the first one's.
    phases: [...new Set(placements.map((placement) => placement.phase))],
    output_dir: placements[0]?.outputDir ?? null,
    placements: placements.map((placement) => ({ phase: placement.phase, output_dir: placement.outputDir })),
    retries: task.policy.retries,
    timeout_ms: task.policy.timeoutMs,
    backoff_ms: task.policy.backoffMs,
    resources: task.policy.resources,
  };
}

/** Where a task's environment comes from. */
export interface TaskEnvOptions {
  stateDir: string;
  env?: NodeJS.ProcessEnv;
  onGpuMachine: boolean;
  checkpointRoot?: string;
  /** The agent's environment with `env` over it, where the caller read it already. */
  inherited?: NodeJS.ProcessEnv;
}

/**
 * The environment a task runs in: the agent's, `env`, and over them its own variables
 * (`taskVariables`).
 */
export function taskEnvironment(lease: Lease, files: TaskFiles, options: TaskEnvOptions): NodeJS.ProcessEnv {
  const inherited = options.inherited ?? { ...process.env, ...options.env };
  return { ...inherited, ...taskVariables(lease, files, { ...options, inherited }) };
}

/**
 * A task's own variables, laid over the agent's environment (`inherited`): the LABSWEEP_*
 * variables that name its task, attempt, params and files, the Python client on PYTHONPATH, and
 * its GPUs.
 */
export function taskVariables(lease: Lease, files: TaskFiles, options: TaskEnvOptions): NodeJS.ProcessEnv {
  const task = lease.task;
  const inherited = options.inherited ?? { ...process.env, ...options.env };
  const env: NodeJS.ProcessEnv = {
    // The phase's `env:` first, so labsweep's own variables win (the config cannot name them),
    // and its PYTHONPATH, if any, gets the Python client added like the agent's would.
    ...task.env,
    [STATE_DIR_MARKER]: resolve(options.stateDir),
    LABSWEEP_TASK_ID: String(task.id),
    LABSWEEP_TASK_SIGNATURE: task.signature,
    LABSWEEP_ATTEMPT_ID: String(lease.attemptId),
    LABSWEEP_PARAMS: JSON.stringify(task.params),
    LABSWEEP_CONFIG_FILE: files.configPath,
    LABSWEEP_RESULT_FILE: files.resultPath,
    LABSWEEP_OUTPUT_DIR: lease.placements[0]?.outputDir ?? "",
    LABSWEEP_PHASES: [...new Set(lease.placements.map((placement) => placement.phase))].join(","),
    LABSWEEP_EVENTS_FILE: files.eventsPath,
    LABSWEEP_STOP_FILE: files.stopPath,
    LABSWEEP_STOP_SIGNAL: task.policy.stopSignal ?? DEFAULT_STOP_SIGNAL,
    LABSWEEP_CHECKPOINT_DIR: checkpointDir(options.stateDir, task, options.checkpointRoot),
    LABSWEEP_WORK_DIR: files.workDir,
    PYTHONPATH: withPythonClient(task.env?.PYTHONPATH ?? inherited.PYTHONPATH),
  };
  // A CPU slot on a machine with GPUs (all too busy, or left out by --gpus) gets "": without
  // it the task would see, and likely use, every GPU, including other users' busy ones.
  if (options.onGpuMachine || gpusWanted(task.policy.resources, false) > 0) {
    // nvidia-smi numbers GPUs by PCI bus; CUDA must use the same order for the ids to agree.
    env.CUDA_DEVICE_ORDER = "PCI_BUS_ID";
    env.CUDA_VISIBLE_DEVICES = lease.gpuIds.join(",");
  }
  return env;
}

/**
 * The largest result file a task may write. Metrics travel in the finish report, which the
 * coordinator takes only up to its request limit (1 MiB), and are stored with the task: a result
 * near that size would be refused, or slow every read of the ledger. A larger one fails the
 * attempt (retries apply), saying so — never a report refused for ever and a task rerun for ever.
 */
export const RESULT_LIMIT_BYTES = 256 * 1024;

/**
 * The metrics a task wrote to LABSWEEP_RESULT_FILE, nested objects flattened to dotted names as
 * the Python client does (`{"val": {"acc": 1}}` → `val.acc`), and Python's bare NaN/Infinity as
 * its strings (parseResultJson): an empty or missing file means a
 * task with no metrics (a no-op or side-effect-only task); anything but a JSON object, a name
 * reached twice, or a file over RESULT_LIMIT_BYTES, is an error.
 */
export function readResult(resultPath: string): { metrics: Record<string, unknown> } | { error: string } {
  let text: string;
  try {
    // Checked before reading: a runaway task may have written gigabytes.
    const size = statSync(resultPath).size;
    if (size > RESULT_LIMIT_BYTES) return { error: resultTooLarge(size) };
    text = readFileSync(resultPath, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { metrics: {} };
    throw error;
  }
  if (text.trim() === "") return { metrics: {} };
  try {
    const value = parseResultJson(text);
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      const flat = flattenMetrics(value as Record<string, unknown>);
      return "error" in flat ? { error: `LABSWEEP_RESULT_FILE: ${flat.error}` } : flat;
    }
    return { error: `LABSWEEP_RESULT_FILE must hold a JSON object of metrics, got: ${text.slice(0, 200)}` };
  } catch (error) {
    return {
      error: `LABSWEEP_RESULT_FILE is not valid JSON (${(error as Error).message}): ${text.slice(0, 200)}`,
    };
  }
}

/** The error of a result over the limit: "result file is 3.2 MiB; the limit is 256 KiB". */
export function resultTooLarge(size: number): string {
  return `result file is ${formatBytes(size)}; the limit is ${formatBytes(RESULT_LIMIT_BYTES)} (LABSWEEP_RESULT_FILE holds metrics: write large outputs to files of your own and put their paths in it)`;
}

/** 300 bytes, 12.5 KiB, 3.2 MiB. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  const [value, unit] = bytes < 1024 * 1024 ? [bytes / 1024, "KiB"] : [bytes / (1024 * 1024), "MiB"];
  return `${Number.isInteger(value) ? value : value.toFixed(1)} ${unit}`;
}
