import { isAbsolute, resolve } from "node:path";
import { checkLine, SlurmOptionError, show } from "./optionError.js";
import { parseSbatchArg } from "./sbatchArgs.js";

export { SlurmOptionError };

/** `labsweep slurm`'s options as typed on the command line (strings, unvalidated). */
export interface SlurmFlagValues {
  /** How many agents: the job array's size, `--array=0-(N-1)`. Required. */
  agents?: string;
  /** Generic resources per agent, `name[:type]:count`, e.g. `gpu:1`. (Default: none) */
  gres?: string;
  /** Partition, or several comma-separated. (Default: the cluster's default partition) */
  partition?: string;
  /** The account the jobs are charged to. (Default: the user's default account) */
  account?: string;
  /** Quality of service. (Default: the account's or partition's default QOS) */
  qos?: string;
  /** Node features the jobs need, a SLURM constraint expression, e.g. `a100|h100`. (Default: none) */
  constraint?: string;
  /**
   * Further sbatch options, each one argument as sbatch takes it, e.g. `--exclusive` or
   * `--mail-type=END` (repeatable). Options labsweep sets itself are refused. (Default: none)
   */
  sbatchArg?: string[];
  /** Time limit per agent, `[D-]HH:MM:SS` or minutes. (Default: the partition's limit) */
  time?: string;
  /** CPUs per agent. (Default: one per slot: SLURM's own default, one CPU, would share it among them) */
  cpusPerTask?: string;
  /** Memory per agent, e.g. `16G` (K, M, G, T; megabytes without a unit). (Default: the cluster's) */
  mem?: string;
  /** Tasks at once per agent. (Default: the GPU count of `--gres gpu:…`, else `--cpus-per-task`, else 1) */
  slots?: string;
  /** The job's name in squeue. (Default: labsweep-agents) */
  jobName?: string;
  /** Where the script, the job logs and the agents' state dirs go. (Default: ./labsweep-slurm) */
  output?: string;
  /** Seconds an idle agent waits for an unreachable coordinator before it exits. (Default: 600) */
  giveUpAfter?: string;
  /**
   * Seconds before the time limit SLURM sends the agent SIGTERM (`--signal=B:TERM@N`), so it stops
   * its tasks gracefully (they checkpoint; attempts are preempted) and sends its reports before
   * the kill. (Default: 120: a 30 s stop_grace, and a margin for the reports and SLURM's up to
   * 60 s of slack)
   */
  stopBefore?: string;
}

/** A `--gres` value: `gpu:1` is `{name: "gpu", type: null, count: 1}`. */
export interface Gres {
  name: string;
  type: string | null;
  count: number;
}

/** A validated job array of agents: every value is safe to write into an sbatch script. */
export interface SlurmJobSpec {
  /** The coordinator URLs the agents try in turn (validated and normalised by the caller). */
  servers: string[];
  agents: number;
  gres: Gres | null;
  partition: string | null;
  account: string | null;
  qos: string | null;
  constraint: string | null;
  /** `--sbatch-arg`s, validated: each is one option word for sbatch. */
  sbatchArgs: string[];
  time: string | null;
  cpusPerTask: number;
  mem: string | null;
  slots: number;
  /**
   * An idle agent exits after this many seconds without an answer from any coordinator URL: an
   * element that starts after the sweep's coordinator has exited releases its allocation.
   */
  giveUpAfterSeconds: number;
  /** `#SBATCH --signal=B:TERM@N`: SIGTERM to the agent (the batch shell it replaces) N s before the time limit. */
  stopBeforeSeconds: number;
  jobName: string;
  /** Absolute. */
  outputDir: string;
  /** `serve --slurm`: an agent without work this long exits, releasing its allocation. (Default: none) */
  idleExitSeconds?: number | null;
}

export const DEFAULT_JOB_NAME = "labsweep-agents";
export const DEFAULT_OUTPUT_DIR = "labsweep-slurm";

const NAME = /^[A-Za-z0-9_.-]+$/;
const GRES = /^([A-Za-z0-9_.-]+)(?::([A-Za-z0-9_.-]+))?:([1-9][0-9]*)$/;
const TIME_CLOCK = /^(?:([0-9]+)-)?([0-9]{1,2}):([0-5][0-9]):([0-5][0-9])$/;
const MINUTES = /^[0-9]+$/;
const DEFAULT_GIVE_UP_AFTER_SECONDS = 600;
const MEM = /^[0-9]+[KMGT]?$/;

/**
 * Validates every option of `labsweep slurm` (the servers are validated by the caller). Throws a
 * `SlurmOptionError` naming the option, its allowed forms and the value it got.
 */
export function parseSlurmOptions(
  servers: string[],
  flags: SlurmFlagValues,
  cwd: string = process.cwd(),
): SlurmJobSpec {
  if (servers.length === 0) throw new SlurmOptionError("--server needs at least one coordinator URL");
  if (flags.agents === undefined)
    throw new SlurmOptionError(
      "labsweep slurm needs --agents N: how many agents (job array elements) to run",
    );
  const agents = positiveInteger("--agents", flags.agents);
  const gres = flags.gres === undefined ? null : parseGres(flags.gres);
  const cpus = flags.cpusPerTask === undefined ? null : positiveInteger("--cpus-per-task", flags.cpusPerTask);
  const gpus = gres?.name === "gpu" ? gres.count : null;
  const slots = flags.slots === undefined ? (gpus ?? cpus ?? 1) : positiveInteger("--slots", flags.slots);
  const time = flags.time === undefined ? null : parseTime(flags.time);
  const stopBeforeSeconds =
    flags.stopBefore === undefined ? DEFAULT_STOP_BEFORE_SECONDS : stopBefore(flags.stopBefore);
  checkStopBefore(time, stopBeforeSeconds, flags.stopBefore === undefined);
  return {
    servers,
    agents,
    gres,
    partition: flags.partition === undefined ? null : parsePartition(flags.partition),
    account: flags.account === undefined ? null : parseName("--account", flags.account, "an account"),
    qos: flags.qos === undefined ? null : parseName("--qos", flags.qos, "a QOS"),
    constraint: flags.constraint === undefined ? null : parseConstraint(flags.constraint),
    sbatchArgs: (flags.sbatchArg ?? []).map(parseSbatchArg),
    time,
    // Each slot runs a task, and a task needs a CPU of its own.
    cpusPerTask: cpus ?? slots,
    mem: flags.mem === undefined ? null : parseMem(flags.mem),
    slots,
    giveUpAfterSeconds:
      flags.giveUpAfter === undefined
        ? DEFAULT_GIVE_UP_AFTER_SECONDS
        : positiveInteger("--give-up-after", flags.giveUpAfter),
    stopBeforeSeconds,
    jobName: parseJobName(flags.jobName ?? DEFAULT_JOB_NAME),
    outputDir: parseOutputDir(flags.output ?? DEFAULT_OUTPUT_DIR, cwd),
  };
}

/** SLURM may send the --signal warning up to this much earlier than asked (slurmctld's checks). */
const SIGNAL_SLACK_SECONDS = 60;

/**
 * A warning that may come as the job starts would stop each agent as it starts (or kill it, while
 * it is not yet listening): the time limit must exceed --stop-before by SLURM's slack. (`--time 0`
 * is no limit.)
 */
function checkStopBefore(time: string | null, stopBeforeSeconds: number, isDefault: boolean): void {
  const limit = time === null ? null : timeSeconds(time);
  const least = stopBeforeSeconds + SIGNAL_SLACK_SECONDS;
  if (limit === null || limit === 0 || limit >= least) return;
  throw new SlurmOptionError(
    `--time ${time} (${limit} s) must be at least --stop-before (${stopBeforeSeconds} s${isDefault ? ", the default" : ""}) plus the ${SIGNAL_SLACK_SECONDS} s SLURM may send its warning early (${least} s), or agents may be told to stop as they start: give a longer --time or a smaller --stop-before`,
  );
}

/** A valid `--time` in seconds. */
function timeSeconds(text: string): number {
  const clock = TIME_CLOCK.exec(text);
  if (!clock) return Number(text) * 60;
  const [, days = "0", hours = "0", minutes = "0", seconds = "0"] = clock;
  return ((Number(days) * 24 + Number(hours)) * 60 + Number(minutes)) * 60 + Number(seconds);
}

/** SLURM takes `--signal=…@N` up to 65535 s. */
const MAX_STOP_BEFORE_SECONDS = 65_535;
const DEFAULT_STOP_BEFORE_SECONDS = 120;

function stopBefore(text: string): number {
  const seconds = positiveInteger("--stop-before", text);
  if (seconds > MAX_STOP_BEFORE_SECONDS)
    throw new SlurmOptionError(
      `--stop-before must be at most ${MAX_STOP_BEFORE_SECONDS} seconds (SLURM's limit), got ${seconds}`,
    );
  return seconds;
}

function positiveInteger(flag: string, text: string): number {
  if (!/^[0-9]+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text)))
    throw new SlurmOptionError(`${flag} must be a positive whole number, got ${show(text)}`);
  return Number(text);
}

export function parseGres(text: string): Gres {
  const match = GRES.exec(text);
  if (!match)
    throw new SlurmOptionError(
      `--gres takes name[:type]:count of letters, digits, "_", "." or "-", e.g. gpu:1 or gpu:a100:2 — got ${show(text)}`,
    );
  return { name: match[1] as string, type: match[2] ?? null, count: Number(match[3]) };
}

export function parseTime(text: string): string {
  const clock = TIME_CLOCK.exec(text);
  const validClock = clock !== null && (clock[1] === undefined || Number(clock[2]) < 24);
  if (!validClock && !MINUTES.test(text))
    throw new SlurmOptionError(
      `--time takes [D-]HH:MM:SS or whole minutes, e.g. 2-00:00:00, 04:30:00 or 90 — got ${show(text)}`,
    );
  return text;
}

export function parseMem(text: string): string {
  if (!MEM.test(text))
    throw new SlurmOptionError(
      `--mem takes a whole number with an optional unit K, M, G or T (megabytes without one), e.g. 16G — got ${show(text)}`,
    );
  return text;
}

export function parsePartition(text: string): string {
  if (!text.split(",").every((part) => NAME.test(part)))
    throw new SlurmOptionError(
      `--partition takes partition names of letters, digits, "_", "." or "-", several comma-separated — got ${show(text)}`,
    );
  return checkLine("--partition", text);
}

/** An account or QOS name: SLURM's names are letters, digits, "_", "." and "-". */
function parseName(flag: string, text: string, what: string): string {
  if (!NAME.test(text))
    throw new SlurmOptionError(
      `${flag} takes ${what} name of letters, digits, "_", "." or "-" — got ${show(text)}`,
    );
  return checkLine(flag, text);
}

/**
 * A constraint is an expression of feature names and `&`, `|`, `,`, `*N`, `[…]`, `(…)`; SLURM
 * judges it. It is double-quoted on its `#SBATCH` line, so only what a line cannot hold is refused.
 */
function parseConstraint(text: string): string {
  if (text.trim() === "")
    throw new SlurmOptionError("--constraint needs node features, e.g. a100 or a100|h100");
  return checkLine("--constraint", text);
}

export function parseJobName(text: string): string {
  if (!NAME.test(text))
    throw new SlurmOptionError(
      `--job-name takes letters, digits, "_", "." or "-", e.g. ${DEFAULT_JOB_NAME} — got ${show(text)}`,
    );
  return checkLine("--job-name", text);
}

/**
 * The output dir becomes `#SBATCH --output=DIR/labsweep-%A_%a.log`, so on top of what an `#SBATCH`
 * line cannot hold, a backslash is refused: in a SLURM file name it turns off the `%A`/`%a`
 * patterns. (`%` itself is fine: it is written as `%%`.)
 */
export function parseOutputDir(text: string, cwd: string): string {
  if (text === "") throw new SlurmOptionError("--output needs a directory, got an empty string");
  const dir = isAbsolute(text) ? resolve(text) : resolve(cwd, text);
  if (dir.includes("\\"))
    throw new SlurmOptionError(
      `--output ${show(text)} holds a backslash, which turns off the %A/%a patterns of SLURM log file names: pick another directory`,
    );
  checkLine("--output", dir, text);
  return dir;
}
