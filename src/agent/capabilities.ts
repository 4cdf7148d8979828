import { execFile, spawn } from "node:child_process";
import { availableParallelism, hostname, totalmem } from "node:os";
import type { AgentCapabilities } from "../protocol/http.js";
import type { GpuInfo } from "./gpuProbe.js";

/** A configured check, e.g. `torch=python3 -c "import torch"`: passes when it exits 0 in time. */
export interface ProbeSpec {
  name: string;
  command: string;
}

/** Parses `NAME=COMMAND`; the name is what the coordinator matches against. */
export function parseProbe(text: string): ProbeSpec {
  const at = text.indexOf("=");
  const name = at < 0 ? "" : text.slice(0, at).trim();
  const command = at < 0 ? "" : text.slice(at + 1).trim();
  if (!/^[A-Za-z0-9_.-]+$/.test(name) || command === "") {
    throw new Error(
      `a probe is NAME=COMMAND with a name of letters, digits, "_", "." or "-", e.g. torch='python3 -c "import torch"' — got "${text}"`,
    );
  }
  return { name, command };
}

export interface ProbeRunOptions {
  /** How long a probe may run before it counts as failed. (Default: 30 s) */
  timeoutMs?: number;
  /** Environment and PATH of the probes. (Default: process.env) */
  env?: NodeJS.ProcessEnv;
  /** Where the probes run. (Default: the current directory) */
  cwd?: string;
}

/** Runs every probe at once with `sh -c`; each passes when it exits 0 within the timeout. */
export async function runProbes(
  probes: ProbeSpec[],
  options: ProbeRunOptions = {},
): Promise<Record<string, boolean>> {
  const results = await checkProbes(probes, options);
  return Object.fromEntries(results.map((result) => [result.name, result.ok]));
}

/** How one probe went; `why` says what failed (exit code or timeout, and its last stderr line). */
export interface ProbeResult {
  name: string;
  ok: boolean;
  why: string | null;
}

/** runProbes, saying why each failed probe failed (`labsweep doctor` prints it). */
export async function checkProbes(
  probes: ProbeSpec[],
  options: ProbeRunOptions = {},
): Promise<ProbeResult[]> {
  const results = await Promise.all(probes.map((probe) => runProbe(probe.command, options)));
  return probes.map((probe, index) => {
    const why = results[index] ?? null;
    return { name: probe.name, ok: why === null, why };
  });
}

/** Stderr kept of a probe, for the reason it failed. */
const PROBE_STDERR_BYTES = 4096;

/** Runs one probe: null when it passed, else why it failed. */
function runProbe(command: string, options: ProbeRunOptions): Promise<string | null> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  return new Promise((resolve) => {
    // Its own process group, so a timeout takes down whatever the probe started too.
    const child = spawn("/bin/sh", ["-c", command], {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ["ignore", "ignore", "pipe"],
      detached: true,
    });
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-PROBE_STDERR_BYTES);
    });
    const said = () => {
      const last = stderr.trim().split("\n").at(-1)?.trim();
      return last ? `: ${last}` : "";
    };
    const timer = setTimeout(() => {
      try {
        process.kill(-(child.pid as number), "SIGKILL");
      } catch {
        // already gone
      }
      resolve(`did not finish within ${timeoutMs / 1000} s (--probe-timeout)${said()}`);
    }, timeoutMs);
    child.once("error", (error) => {
      clearTimeout(timer);
      resolve(`could not start /bin/sh: ${error.message}`);
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(null);
      else resolve(`${signal ? `killed by ${signal}` : `exit code ${code}`}${said()}`);
    });
  });
}

/** The CUDA version in the header of plain `nvidia-smi` output ("CUDA Version: 12.4"), or null. */
export function parseCudaVersion(text: string): string | null {
  return /CUDA Version\s*:\s*([0-9][0-9.]*)/.exec(text)?.[1] ?? null;
}

/** Runs plain `nvidia-smi` for its header's CUDA version; null when it is not there or fails. */
export function probeCudaVersion(
  options: { env?: NodeJS.ProcessEnv; command?: string; timeoutMs?: number } = {},
): Promise<string | null> {
  return new Promise((resolve) => {
    execFile(
      options.command ?? "nvidia-smi",
      [],
      { env: options.env ?? process.env, timeout: options.timeoutMs ?? 5000, encoding: "utf8" },
      (error, stdout) => resolve(error ? null : parseCudaVersion(stdout)),
    );
  });
}

export interface CapabilityInput {
  agentId: string;
  /** (Default: the hostname) */
  name?: string;
  slots: number;
  /** The GPUs this agent may use (after `--gpus` and the host's GPU locks). */
  gpus: GpuInfo[];
  /** The machine's GPUs, for the driver and CUDA versions. (Default: `gpus`) */
  allGpus?: GpuInfo[];
  tags?: string[];
  probes?: ProbeSpec[];
  /** Probe timeout and environment; `env` also decides which `nvidia-smi` runs. */
  probeOptions?: ProbeRunOptions;
}

/** What this machine offers, as sent to `POST /agents` and printed by `labsweep doctor`. */
export async function describeMachine(input: CapabilityInput): Promise<AgentCapabilities> {
  const env = input.probeOptions?.env ?? process.env;
  const allGpus = input.allGpus ?? input.gpus;
  const [probes, cudaVersion] = await Promise.all([
    runProbes(input.probes ?? [], input.probeOptions),
    allGpus.length > 0 ? probeCudaVersion({ env }) : Promise.resolve(null),
  ]);
  return {
    agentId: input.agentId,
    name: input.name ?? hostname(),
    host: hostname(),
    pid: process.pid,
    slots: input.slots,
    cpus: availableParallelism(),
    ramMb: Math.round(totalmem() / 2 ** 20),
    gpus: input.gpus.map((gpu) => ({
      index: gpu.index,
      uuid: gpu.uuid,
      name: gpu.name,
      memoryTotalMiB: gpu.memoryTotalMiB,
      memoryFreeMiB: gpu.memoryFreeMiB,
    })),
    driverVersion: allGpus.find((gpu) => gpu.driverVersion !== null)?.driverVersion ?? null,
    cudaVersion,
    tags: [...new Set(input.tags ?? [])],
    probes,
    slurm: slurmJob(env),
  };
}

function slurmJob(env: NodeJS.ProcessEnv): AgentCapabilities["slurm"] {
  const jobId = env.SLURM_ARRAY_JOB_ID || env.SLURM_JOB_ID;
  if (!jobId) return null;
  return { jobId, arrayTaskId: env.SLURM_ARRAY_TASK_ID || null };
}
