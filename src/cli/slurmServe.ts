import type { SlurmAllocation } from "../app/slurmAllocation.js";
import { findOnPath, parseSlurmOptions, type SlurmFlagValues, SlurmOptionError } from "../slurm/index.js";
import { serverList } from "./agent.js";
import { UsageError } from "./exitCodes.js";
import { positiveInteger, seconds } from "./flags.js";

/** `serve --slurm` and the job shape it submits (the options of `labsweep slurm`). */
export interface SlurmServeFlags extends Omit<SlurmFlagValues, "agents"> {
  slurm?: boolean;
  maxJobs?: string;
  minJobs?: string;
  idleExit?: string;
  slurmServer?: string;
  allocEvery?: string;
}

const DEFAULT_MAX_JOBS = 4;
/** An allocated agent without work this long exits: a minute spans a gate opening or a retry's backoff. */
const DEFAULT_IDLE_EXIT_SECONDS = 60;

/** Validates `serve --slurm`'s options (bad ones exit 2 before anything is served or submitted). */
export function slurmAllocationFrom(flags: SlurmServeFlags): SlurmAllocation {
  const missing = ["sbatch", "squeue", "scancel"].filter((command) => findOnPath(command) === null);
  if (missing.length > 0)
    throw new UsageError(`--slurm needs SLURM's ${missing.join(", ")} on PATH: serve from a login node`);
  const servers = flags.slurmServer === undefined ? null : serverList(flags.slurmServer);
  const maxJobs =
    flags.maxJobs === undefined ? DEFAULT_MAX_JOBS : positiveInteger("--max-jobs", flags.maxJobs);
  const minJobs = flags.minJobs === undefined ? 0 : wholeNumber("--min-jobs", flags.minJobs);
  if (minJobs > maxJobs)
    throw new UsageError(`--min-jobs (${minJobs}) cannot be more than --max-jobs (${maxJobs})`);
  const idleExit =
    flags.idleExit === undefined ? DEFAULT_IDLE_EXIT_SECONDS : seconds("--idle-exit", flags.idleExit);
  try {
    // The array's size is chosen per submission, and the URL defaults to the one served.
    const spec = parseSlurmOptions(servers ?? ["http://127.0.0.1"], { ...flags, agents: "1" });
    const everyMs =
      flags.allocEvery === undefined ? undefined : seconds("--alloc-every", flags.allocEvery) * 1000;
    return { spec: { ...spec, servers, idleExitSeconds: idleExit }, maxJobs, minJobs, everyMs };
  } catch (error) {
    if (error instanceof SlurmOptionError) throw new UsageError(error.message);
    throw error;
  }
}

function wholeNumber(flag: string, text: string): number {
  if (!/^[0-9]+$/.test(text)) throw new UsageError(`${flag} must be a whole number, got "${text}"`);
  return Number(text);
}
