import type { StopSignal } from "./stopSignal.js";

/** A parameter value as written in YAML or read back from a CSV cell. */
export type ParamValue = string | number | boolean | null | ParamValue[] | { [key: string]: ParamValue };

/** Effective parameters of one task, in declaration order (file defaults, phase defaults, combination). */
export type Params = Record<string, ParamValue>;

/** What a task needs from the machine it runs on. */
export interface Resources {
  /** GPUs per task; fractions pack several tasks on one GPU. (Default: 0 on CPU-only machines, else 1) */
  gpus: number | null;
  /** Free GPU memory each GPU must have, in GB. (Default: 0) */
  gpuMemoryGb: number;
  /** CPU cores per task. (Default: 1) */
  cpus: number;
  /**
   * Tags an agent must offer (`--tag`) to run the task. (Default: [])
   * Ledgers written before tags existed lack the field: read it as `tags ?? []`.
   */
  tags: string[];
}

/** When a phase listed in `after` counts as good enough for its dependents to run. */
export type Gate = { kind: "all_succeeded" } | { kind: "min_success"; ratio: number };

/** `artifact_limit_mb` when a config leaves it out: the files one attempt may hand back, together. */
export const DEFAULT_ARTIFACT_LIMIT_MB = 1024;

/** `max_lost` when a config leaves it out, and for ledgers written before it existed. */
export const DEFAULT_MAX_LOST = 3;

/** How a task is run and retried; the first phase that declares a task decides it. */
export interface RunPolicy {
  retries: number;
  /**
   * Losses (its worker died or stopped answering while it ran) after which the task fails
   * instead of being requeued again; they spend no retry. (Default: 3)
   * Ledgers written before the setting existed lack the field: read it as `maxLost ?? DEFAULT_MAX_LOST`.
   */
  maxLost: number;
  /**
   * Fail fast: once this many of the phase's tasks failed for good (a fraction below 1: of its
   * tasks), or its first this-many attempts all failed with one error line, the phase stops:
   * nothing more of it is leased until `labsweep retry`. (Default: none)
   */
  maxFailures?: number;
  /** Kill the task's process group after this long. (Default: none) */
  timeoutMs: number | null;
  /** First retry delay; doubles per retry, capped at 10 minutes. (Default: 1 s) */
  backoffMs: number;
  resources: Resources;
  /**
   * How the command is started: as is (null), or through `accelerate launch` / `torchrun` with
   * one process per allocated GPU. Not part of the task's identity. (Default: null)
   * Ledgers written before launchers existed lack the field: read it as `launcher ?? null`.
   */
  launcher: LauncherSpec | null;
  /**
   * Globs of files, relative to the attempt's work dir, collected after a success and stored
   * under each output dir's `artifacts/`. Ledgers written before artifacts lack the field (hence optional): read
   * it as `artifacts ?? []`. (Default: [])
   */
  artifacts?: string[];
  /**
   * The most one attempt's artifacts may weigh together, in MB (MiB); more fails the attempt.
   * Read as `artifactLimitMb ?? DEFAULT_ARTIFACT_LIMIT_MB`. (Default: 1024)
   */
  artifactLimitMb?: number;
  /**
   * Absolute dir under which each task's checkpoint dir (`<root>/<signature>`) lives: storage
   * every agent sees. An agent's `--checkpoint-root` wins on its machine. Absent when the config
   * sets none. (Default: `<agent state dir>/checkpoints`)
   */
  checkpointRoot?: string;
  /** The signal a stop sends the task's process group first; absent when not set. (Default: SIGTERM) */
  stopSignal?: StopSignal;
  /** Time between the stop signal and SIGKILL; absent when not set. (Default: the agent's --grace, else 30 s) */
  stopGraceMs?: number;
  /**
   * Stop an attempt as `hung` after this long without log output, an events-file line or (for
   * GPU tasks) GPU utilisation; absent when not set. (Default: none)
   */
  hangTimeoutMs?: number;
  /** `on_oom`: how an attempt that ran out of memory is retried. Absent without one. */
  onOom?: OnOom;
  /** `env`: variables set in each task's environment. Not part of the task's identity. Absent without one. */
  env?: EnvSetting;
}

/**
 * `env` after validation: variable name → template (`{param}`, `{task_id}`, `{signature}`,
 * `{group}`, `{phase}`), rendered per task (envSetting.ts renderEnv) and set in its environment
 * directly, never through a shell.
 */
export interface EnvSetting {
  vars: Record<string, string>;
  /** The phase's command template: `{group}` is signed with it, as signatures are. */
  commandTemplate: string;
  /** The phase's spellings of numbers and booleans, so `{lr}` renders as the command does. */
  writtenAs?: Record<string, Record<string, string>>;
}

/**
 * `on_oom` after validation: an attempt that ran out of memory runs again at once, without
 * spending a retry, with `param` scaled by `factor` (rounded down for an integer value, never
 * below `min`); at `min` it is a failure like any other.
 */
export interface OnOom {
  param: string;
  /** In (0, 1). (Default: 0.5) */
  factor: number;
  /** (Default: 1) */
  min: number;
  /** The phase's command template and spellings: the command is rendered again with the scaled value. */
  commandTemplate: string;
  writtenAs?: Record<string, Record<string, string>>;
}

/** `launcher:` after validation: a multi-process launcher and its settings. */
export type LauncherSpec = AccelerateLauncher | TorchrunLauncher;

/** Accelerate's mixed-precision modes, as `accelerate launch --mixed_precision` takes them. */
export type MixedPrecision = "no" | "fp16" | "bf16" | "fp8";

export interface AccelerateLauncher {
  name: "accelerate";
  /** `--mixed_precision`; null passes none (accelerate's config file, else "no"). (Default: null) */
  mixedPrecision: MixedPrecision | null;
  /**
   * `--main_process_port` when several processes must meet: a port, or "auto" for a port free
   * when the task starts (a fixed one would clash between tasks running side by side). (Default: "auto")
   */
  mainProcessPort: number | "auto";
  /** More `accelerate launch` arguments, placed before the script. (Default: []) */
  extraArgs: string[];
}

export interface TorchrunLauncher {
  name: "torchrun";
  /**
   * `--master_port` of the task's rendezvous on 127.0.0.1: a port, or "auto" for a port free
   * when the task starts (a fixed one would clash between tasks running side by side). (Default: "auto")
   */
  masterPort: number | "auto";
  /** More `torchrun` arguments, placed before the script. (Default: []) */
  extraArgs: string[];
}

/** A phase after validation: everything needed to expand it into tasks. */
export interface PhaseSpec {
  name: string;
  /** Absolute path of the config file that declares the phase. */
  file: string;
  line: number;
  /** Directory relative paths (output_dir, the command's cwd) resolve against. */
  baseDir: string;
  defaults: Params;
  /** Parameter axes in listed order; their cartesian product is the phase's grid. */
  axes: Array<{ name: string; values: ParamValue[] }>;
  outputDirTemplate: string;
  commandTemplate: string;
  /**
   * How numbers and booleans were spelt in the config where that differs from their plain text
   * (`0.0`, `1e-3`, `True`): parameter → JSON of the value → the spelling. Templates render
   * these as written, as the original system did (Python's `str(0.0)` is "0.0"). (Default: none)
   */
  writtenAs?: Record<string, Record<string, string>>;
  after: string[];
  gate: Gate;
  /** Higher leases first when several phases have claimable tasks. (Default: 0) */
  priority: number;
  policy: RunPolicy;
}

/** What a `notify:` entry fires on (`failure_rate` is written as the mapping `{failure_rate: 0.2}`). */
export type NotifyEvent = "sweep_finished" | "phase_finished" | "task_failed" | "agent_lost" | "failure_rate";

/**
 * One `notify:` entry after validation: what it fires on and where it sends (exactly one of
 * `webhook` and `command`). Entries of every config file apply to the whole sweep.
 */
export interface NotifyEntry {
  on: NotifyEvent;
  /** `failure_rate`'s threshold in (0, 1]; absent for the other events. */
  threshold?: number;
  /**
   * `failure_rate`'s `min_finished`: the rate is judged once this many tasks finished, or every
   * task of a smaller sweep. (Default: 10; absent for the other events)
   */
  minFinished?: number;
  /** An http(s) URL that gets a JSON POST. It may hold a token: show it only through redactUrl. */
  webhook?: string;
  /** A shell command run with the event in its environment (LABSWEEP_EVENT, LABSWEEP_EVENT_JSON, …). */
  command?: string;
  /** Where the entry is declared, for messages: `file:line`, and the dir its command runs in. */
  file: string;
  line: number;
  baseDir: string;
}

/** One validated config file. */
export interface SweepFile {
  file: string;
  phases: PhaseSpec[];
  /** Its `notify:` entries; absent when it declares none. */
  notify?: NotifyEntry[];
  /** `snapshot: true`: its tasks run from a copy of its dir (absent: from the dir itself). */
  snapshot?: true;
}

/** Where a task's result row goes: one phase and the output dir it renders for that phase. */
export interface Placement {
  phase: string;
  outputDir: string;
}

/** One run of the command with one set of parameters, before de-duplication. */
export interface TaskSpec {
  signature: string;
  params: Params;
  command: string;
  cwd: string;
  configFile: string;
  placement: Placement;
  policy: RunPolicy;
}
