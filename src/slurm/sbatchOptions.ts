import type { SlurmJobSpec } from "./options.js";
import { sbatchQuote } from "./shellQuote.js";

/** The job log pattern: one file per array element (`%A` the array's job id, `%a` the index). */
export const LOG_PATTERN = "labsweep-%A_%a.log";

/**
 * The signal SLURM sends an agent `--stop-before` seconds before its job's time limit. Not
 * SIGTERM, which scancel and preemption send too: SIGUSR2 tells the agent that its allocation is
 * ending, so it says so and exits 0 once its tasks are back in the queue.
 */
export const TIME_LIMIT_SIGNAL = "USR2";

/**
 * One sbatch option of the job array. Each is written twice: on an `#SBATCH` line, for whoever
 * reads or submits the script, and on sbatch's command line, which alone wins over the
 * `SBATCH_*` environment variables (sbatch ranks them above the script's lines).
 */
export interface SbatchOption {
  /** The one argv word, `--time=90`. */
  arg: string;
  /** The same for an `#SBATCH` line: a value that needs it sbatch-quoted. */
  line: string;
  /** The input environment variable sbatch would otherwise take this option from. */
  env: string | null;
}

/** Every sbatch option `labsweep slurm` passes, in the script's order; pure. */
export function sbatchOptions(spec: SlurmJobSpec): SbatchOption[] {
  const option = (name: string, value: string | null, env: string | null, quote = false): SbatchOption => {
    const arg = value === null ? name : `${name}=${value}`;
    const line = value === null ? name : `${name}=${quote ? sbatchQuote(value) : value}`;
    return { arg, line, env };
  };
  const given = (name: string, value: string | null, env: string, quote = false): SbatchOption[] =>
    value === null ? [] : [option(name, value, env, quote)];
  return [
    option("--job-name", spec.jobName, "SBATCH_JOB_NAME"),
    option("--array", `0-${spec.agents - 1}`, "SBATCH_ARRAY_INX"),
    option("--nodes", "1", null),
    option("--ntasks", "1", null),
    option("--cpus-per-task", String(spec.cpusPerTask), null),
    ...given("--gres", spec.gres && gresText(spec.gres), "SBATCH_GRES"),
    ...given("--partition", spec.partition, "SBATCH_PARTITION"),
    ...given("--account", spec.account, "SBATCH_ACCOUNT"),
    ...given("--qos", spec.qos, "SBATCH_QOS"),
    ...given("--constraint", spec.constraint, "SBATCH_CONSTRAINT", true),
    ...given("--time", spec.time, "SBATCH_TIMELIMIT"),
    ...given("--mem", spec.mem, "SBATCH_MEM_PER_NODE"),
    option("--output", `${spec.outputDir.replaceAll("%", "%%")}/${LOG_PATTERN}`, "SBATCH_OUTPUT", true),
    // B: signals the batch shell, which `exec` made the agent.
    option("--signal", `B:${TIME_LIMIT_SIGNAL}@${spec.stopBeforeSeconds}`, "SBATCH_SIGNAL"),
    option("--no-requeue", null, "SBATCH_REQUEUE"),
    option("--export", "ALL", "SBATCH_EXPORT"),
    ...spec.sbatchArgs.map((arg) => ({ arg, line: plainWord(arg) ? arg : sbatchQuote(arg), env: null })),
  ];
}

/**
 * The `SBATCH_*` variables set in `env` that sbatch's command line overrides here, for a note:
 * the user may have meant them.
 */
export function overriddenVariables(options: SbatchOption[], env: NodeJS.ProcessEnv): string[] {
  return options
    .map((option) => option.env)
    .filter((name): name is string => name !== null && (env[name] ?? "") !== "");
}

function gresText(gres: NonNullable<SlurmJobSpec["gres"]>): string {
  return [gres.name, gres.type, String(gres.count)].filter((part) => part !== null).join(":");
}

/** A word sbatch reads as it is on an `#SBATCH` line: nothing to quote. */
function plainWord(text: string): boolean {
  return /^[A-Za-z0-9_.,:=@%+/-]+$/.test(text);
}
