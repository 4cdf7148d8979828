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
