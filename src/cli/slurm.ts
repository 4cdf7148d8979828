import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { AllocationReport } from "../slurm/allocator.js";
import {
  agentBinary,
  findOnPath,
  LOG_PATTERN,
  overriddenVariables,
  parseSlurmOptions,
  SCRIPT_NAME,
  type SlurmFlagValues,
  type SlurmJobSpec,
  SlurmOptionError,
  sbatchOptions,
  sbatchScript,
  submitSbatch,
  writeFileAtomically,
} from "../slurm/index.js";
import { serverList } from "./agent.js";
import { allocationLines } from "./allocationLines.js";
import { callApi, serverFrom, tokenFrom } from "./apiClient.js";
import { EXIT, UsageError } from "./exitCodes.js";

export interface SlurmFlags extends SlurmFlagValues {
  server?: string;
  token?: string;
  tokenFile?: string;
  dryRun?: boolean;
  resumeAlloc?: boolean;
}

/**
 * `labsweep slurm`: submits `--agents N` labsweep agents as one SLURM job array, or with
 * --dry-run prints the sbatch script. Exit codes: 0 submitted (or printed), 2 a bad option, no
 * token or no sbatch (nothing written), 1 sbatch refused the job.
 */
export async function slurmCommand(flags: SlurmFlags): Promise<number> {
  if (flags.resumeAlloc) return resumeAllocation(flags);
  const spec = jobSpec(flags);
  const script = sbatchScript(spec, agentBinary());
  warnIfLoopback(spec.servers);
  if (flags.dryRun) {
    process.stdout.write(script);
    return EXIT.ok;
  }
  const token = tokenFrom(flags, ["LABSWEEP_TOKEN"]);
  if (!token)
    throw new UsageError(
      "labsweep slurm needs the coordinator's agent token: LABSWEEP_TOKEN in the environment, or --token-file FILE (the jobs get it through their environment; it is never written to the script)",
    );
  const sbatch = findOnPath("sbatch");
  if (!sbatch)
    throw new UsageError(
      "sbatch is not on PATH: run labsweep slurm where SLURM's commands are (a login node), or print the script with --dry-run and submit it there",
    );
  mkdirSync(spec.outputDir, { recursive: true });
  const file = join(spec.outputDir, SCRIPT_NAME);
  writeFileAtomically(file, script, 0o644);
  const options = sbatchOptions(spec);
  const overridden = overriddenVariables(options, process.env);
  if (overridden.length > 0)
    process.stderr.write(
      `labsweep slurm: note: ${overridden.join(", ")} in the environment ${overridden.length === 1 ? "is" : "are"} overridden: labsweep passes its own options on sbatch's command line\n`,
    );
  const args = options.map((option) => option.arg);
  const submitted = await submitSbatch(sbatch, args, file, { ...process.env, LABSWEEP_TOKEN: token });
  if (submitted.warnings) process.stderr.write(`${submitted.warnings}\n`);
  const on = submitted.cluster ? ` on cluster ${submitted.cluster}` : "";
  process.stdout.write(
    [
      `submitted job array ${submitted.jobId}${on}: ${spec.agents} labsweep agent(s), elements 0-${spec.agents - 1}`,
      `script: ${file}`,
      `logs:   ${join(spec.outputDir, LOG_PATTERN.replace("%A", submitted.jobId).replace("%a", "N"))}`,
      `watch:  labsweep agents --server ${spec.servers[0]}`,
      `stop:   scancel ${submitted.jobId}`,
      "",
    ].join("\n"),
  );
  return EXIT.ok;
}

/** `--resume-alloc`: `serve --slurm` goes on submitting after the failures that paused it. */
async function resumeAllocation(flags: SlurmFlags): Promise<number> {
  const server = serverFrom(flags, "admin");
  if (!server)
    throw new UsageError(
      "labsweep slurm --resume-alloc needs the coordinator: --server URL or LABSWEEP_SERVER",
    );
  const report = (await callApi(server, "POST", "/slurm/resume", {})).json as AllocationReport;
  for (const line of allocationLines(report, false)) process.stdout.write(`${line}\n`);
  process.stdout.write("allocation resumed\n");
  return EXIT.ok;
}

function jobSpec(flags: SlurmFlags): SlurmJobSpec {
  const servers = flags.server ?? process.env.LABSWEEP_SERVER;
  if (!servers)
    throw new UsageError(
      "labsweep slurm needs the coordinator's URL as compute nodes reach it: --server URL[,URL…] or LABSWEEP_SERVER",
    );
  try {
    return parseSlurmOptions(serverList(servers), flags);
  } catch (error) {
    if (error instanceof SlurmOptionError) throw new UsageError(error.message);
    throw error;
  }
}

/** A loopback URL works only if the agents run on this machine: say so, but go on. */
function warnIfLoopback(servers: string[]): void {
  const loopback = servers.filter((server) =>
    /^https?:\/\/(localhost|127\.[0-9.]+|\[::1\])(:|\/|$)/.test(server),
  );
  if (loopback.length > 0)
    process.stderr.write(
      `labsweep slurm: note: ${loopback.join(", ")} is this machine; agents on other nodes need its hostname or address\n`,
    );
}
