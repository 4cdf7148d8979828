import { checkLine, SlurmOptionError, show } from "./optionError.js";

/**
 * sbatch's options that `labsweep slurm` sets itself, each with the labsweep flag that sets it
 * (null: the agents need it as it is). A `--sbatch-arg` giving one of them would contradict the
 * script, so it is refused, naming the flag to use instead.
 */
const OWN_OPTIONS: Record<string, string | null> = {
  array: "--agents",
  "job-name": "--job-name",
  output: "--output",
  partition: "--partition",
  account: "--account",
  qos: "--qos",
  constraint: "--constraint",
  time: "--time",
  "cpus-per-task": "--cpus-per-task",
  gres: "--gres",
  mem: "--mem",
  signal: "--stop-before",
  nodes: null,
  ntasks: null,
  export: null,
  requeue: null,
  "no-requeue": null,
  parsable: null,
  wrap: null,
};

/** The short forms of OWN_OPTIONS. */
const OWN_SHORT: Record<string, string> = {
  a: "array",
  J: "job-name",
  o: "output",
  p: "partition",
  A: "account",
  q: "qos",
  C: "constraint",
  t: "time",
  c: "cpus-per-task",
  N: "nodes",
  n: "ntasks",
};

const LONG = /^--([A-Za-z][A-Za-z0-9-]*)(=[\s\S]*)?$/;
const SHORT = /^-([A-Za-z])([\s\S]*)$/;

/**
 * One `--sbatch-arg`: a single sbatch option as sbatch's command line takes it (`--exclusive`,
 * `--mail-type=END`, `-wnode1`). It goes on an `#SBATCH` line and on sbatch's command line.
 */
export function parseSbatchArg(text: string): string {
  const long = LONG.exec(text);
  const short = long ? null : SHORT.exec(text);
  if (!long && !short)
    throw new SlurmOptionError(
      `--sbatch-arg takes one sbatch option, a value joined to it, e.g. --sbatch-arg=--exclusive or --sbatch-arg=--mail-type=END — got ${show(text)}`,
    );
  const name = long ? (long[1] as string) : (OWN_SHORT[(short as RegExpExecArray)[1] as string] ?? null);
  // sbatch takes any unambiguous prefix of a long option (`--part` is --partition).
  const own = name === null ? undefined : Object.keys(OWN_OPTIONS).find((option) => option.startsWith(name));
  if (own !== undefined) {
    const flag = OWN_OPTIONS[own];
    throw new SlurmOptionError(
      `--sbatch-arg ${show(text)}: labsweep slurm sets sbatch's --${own} itself${flag ? `: use labsweep slurm's ${flag}` : ", as its agents need it"}`,
    );
  }
  return checkLine("--sbatch-arg", text);
}
