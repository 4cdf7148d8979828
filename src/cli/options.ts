// The options several commands share, each as commander's [flags, description] pair, so every
// command words them the same.

import { STORE_ENV } from "../ledger/storeEnv.js";
import { collect } from "./flags.js";

/** Records a command's exit code, for `main` to return. */
export type Finish = (exitCode: number) => void;

export const GRACE = [
  "--grace <seconds>",
  "time a stopped task (timeout, hang, Ctrl-C, SIGTERM, cancel) has between its stop signal and SIGKILL where its phase sets no stop_grace (default: 30)",
] as const;

export const CHECKPOINT_ROOT = [
  "--checkpoint-root <dir>",
  "where tasks' checkpoint dirs live on this machine (<dir>/<task signature>); wins over checkpoint_root (default: the config's checkpoint_root, else <state>/checkpoints)",
] as const;

export const STOP_BEFORE = [
  "--stop-before <seconds>",
  "SLURM warns each agent this long before its time limit (--signal=B:USR2@N): it stops its tasks, which checkpoint and go back to the queue as preempted, and exits 0 (default: 120)",
] as const;

export const STATE = [
  "--state <dir>",
  "state dir with the ledger (default: .labsweep/ beside the first config, else ./.labsweep)",
] as const;
export const SERVER = ["--server <url>", "a running coordinator (default: $LABSWEEP_SERVER)"] as const;
// Reads take any token; add, cancel and retry the admin token. Prefer the environment or a
// file: an argument is visible to every user of the machine in `ps`.
export const TOKEN = [
  "--token <token>",
  "its token (default: $LABSWEEP_VIEWER_TOKEN, $LABSWEEP_TOKEN, $LABSWEEP_ADMIN_TOKEN; add/cancel/retry: $LABSWEEP_ADMIN_TOKEN) — other users can see arguments: prefer --token-file",
] as const;
export const TOKEN_FILE = ["--token-file <file>", "read the token from this file's first line"] as const;
export const COMMAND = [
  "--command <template>",
  "command for configs that declare none (the original system's configs)",
] as const;

/** --command on plan, run and serve, which also start a quick grid without any config. */
export const GRID_COMMAND = [
  "--command <template>",
  "command for configs that declare none; with no config, a quick grid of this command, its {placeholders} given by --set (state in ./.labsweep, results in ./results)",
] as const;

/** --set on plan, run and serve (src/sweep/overrides.ts has the grammar). */
export const SET = [
  "--set <[phase.]param=values>",
  'replace or add a parameter\'s values in every phase that has it (or PHASE.param in one): 0.1,0.01 (YAML values, "a,b" keeps a comma) or range(N) / range(A,B[,STEP]); repeatable',
  collect,
] as const;

/** The --store option of every command that opens a ledger. */
export const STORE_OPTION = [
  "--store <url>",
  `the ledger: postgres://USER@HOST:PORT/DB, sqlite:PATH or a file path (default: $${STORE_ENV}, else ledger.sqlite in the state dir)`,
] as const;

/** The shape of an agent job, on `labsweep slurm` and `serve --slurm` alike. */
export const SLURM_JOB = [
  ["--gres <gres>", "generic resources per agent, name[:type]:count, e.g. gpu:1"],
  ["--partition <p>", "the partition (several comma-separated)"],
  ["--account <a>", "the account the jobs are charged to"],
  ["--qos <q>", "the quality of service"],
  ["--constraint <c>", "node features the jobs need, e.g. a100 or 'a100|h100'"],
  ["--time <t>", "time limit per agent, [D-]HH:MM:SS or minutes"],
  ["--cpus-per-task <c>", "CPUs per agent (default: one per slot)"],
  ["--mem <m>", "memory per agent, e.g. 16G"],
  [
    "--slots <s>",
    "tasks at once per agent (default: the GPUs of --gres gpu:N, else --cpus-per-task, else 1)",
  ],
  ["--job-name <name>", "the job's name (default: labsweep-agents)"],
  ["--output <dir>", "the script, job logs and agent state dirs (default: ./labsweep-slurm)"],
  STOP_BEFORE,
] as const;

/** Pass-through for sbatch options labsweep has no flag of its own for. */
export const SBATCH_ARG = [
  "--sbatch-arg <arg>",
  "one more sbatch option, as sbatch takes it, e.g. --sbatch-arg=--exclusive (repeatable)",
  collect,
] as const;

/** `serve --slurm`: agent jobs submitted and cancelled as the queue needs them. */
export const SLURM_ALLOCATION = [
  ["--slurm", "submit agent jobs to SLURM while tasks wait for agents (with the options of labsweep slurm)"],
  ["--max-jobs <n>", "with --slurm: most agent jobs queued or running at once (default: 4)"],
  ["--min-jobs <n>", "with --slurm: keep this many while the sweep is unfinished (default: 0)"],
  [
    "--idle-exit <seconds>",
    "with --slurm: an agent without work this long exits, releasing its allocation (default: 60)",
  ],
  [
    "--slurm-server <urls>",
    "with --slurm: this coordinator's URL as compute nodes reach it (default: the served URL, a wildcard address replaced by the hostname)",
  ],
] as const;
