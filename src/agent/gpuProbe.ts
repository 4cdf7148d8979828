import { execFile } from "node:child_process";

/** One GPU as `nvidia-smi` reports it. Fields the GPU does not report are null. */
export interface GpuInfo {
  index: number;
  uuid: string;
  name: string;
  memoryTotalMiB: number;
  memoryFreeMiB: number;
  memoryUsedMiB: number;
  utilizationPercent: number | null;
  powerW: number | null;
  driverVersion: string | null;
}

export interface ProbeOptions {
  /** Environment for `nvidia-smi`; its PATH decides which binary runs. (Default: process.env) */
  env?: NodeJS.ProcessEnv;
  /** The program to run. (Default: "nvidia-smi") */
  command?: string;
  /** How long `nvidia-smi` may take before the probe fails; a hung driver can block it. (Default: 5000) */
  timeoutMs?: number;
}

const QUERY_FIELDS = [
  "index",
  "uuid",
  "name",
  "memory.total",
  "memory.free",
  "memory.used",
  "utilization.gpu",
  "power.draw",
  "driver_version",
] as const;
const NAME_COLUMN = QUERY_FIELDS.indexOf("name");

/**
 * nvidia-smi exit codes meaning "this machine has no usable GPU": 6 no devices found, 9 driver
 * not loaded, 12 NVML library missing (driver not installed). A machine without GPUs is a normal
 * place to run CPU tasks, so these are not errors.
 */
const NO_GPU_EXIT_CODES = new Set([6, 9, 12]);

/** The machine's GPUs, in nvidia-smi's index order; [] when it has none (or no NVIDIA driver). */
export async function probeGpus(options: ProbeOptions = {}): Promise<GpuInfo[]> {
  const command = options.command ?? "nvidia-smi";
  const args = [`--query-gpu=${QUERY_FIELDS.join(",")}`, "--format=csv,noheader,nounits"];
  const commandLine = [command, ...args].join(" ");
  const result = await run(command, args, options.env ?? process.env, options.timeoutMs ?? 5000);
  if ("noGpus" in result) return [];
  if ("failure" in result) throw new Error(`${commandLine} ${result.failure}`, { cause: result.cause });
  try {
    return parseGpuCsv(result.stdout);
  } catch (error) {
    throw new Error(`${commandLine} printed output labsweep cannot read`, { cause: error });
  }
}

type RunResult = { stdout: string } | { noGpus: true } | { failure: string; cause: unknown };

function run(command: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(command, args, { env, timeout: timeoutMs, encoding: "utf8" }, (error, stdout, stderr) => {
      if (!error) return resolve({ stdout });
      const code = (error as NodeJS.ErrnoException).code as string | number | undefined | null;
      if (code === "ENOENT" || (typeof code === "number" && NO_GPU_EXIT_CODES.has(code)))
        return resolve({ noGpus: true });
      const detail = (stderr || stdout).trim();
      const failure =
        error.killed && code === null
          ? `timed out after ${timeoutMs} ms`
          : `failed (${typeof code === "number" ? `exit code ${code}` : (code ?? error.signal)})`;
      resolve({ failure: detail ? `${failure}: ${detail}` : failure, cause: error });
    });
  });
}

/** Parses `--format=csv,noheader,nounits` output for QUERY_FIELDS, one GPU a line. */
export function parseGpuCsv(stdout: string): GpuInfo[] {
  return stdout
    .split(/\r?\n/)
    .filter((line) => line.trim() !== "")
    .map(parseLine);
}

function parseLine(line: string): GpuInfo {
  const cells = line.split(",");
  // nvidia-smi never quotes, so a comma inside a GPU name would split it; the name is the only
  // free-text column, so any surplus cells belong to it.
  const surplus = cells.length - QUERY_FIELDS.length;
  if (surplus < 0) throw new Error(`expected ${QUERY_FIELDS.length} fields, got ${cells.length}: "${line}"`);
  cells.splice(NAME_COLUMN, surplus + 1, cells.slice(NAME_COLUMN, NAME_COLUMN + surplus + 1).join(","));
  const [index, uuid, name, total, free, used, utilization, power, driver] = cells.map((cell) => cell.trim());
  return {
    index: requiredNumber(index, "index", line),
    uuid: uuid as string,
    name: name as string,
    memoryTotalMiB: requiredNumber(total, "memory.total", line),
    memoryFreeMiB: requiredNumber(free, "memory.free", line),
    memoryUsedMiB: requiredNumber(used, "memory.used", line),
    utilizationPercent: optionalNumber(utilization),
    powerW: optionalNumber(power),
    driverVersion: isReported(driver) ? (driver as string) : null,
  };
}

// Values a GPU does not report come out as "[N/A]", "[Not Supported]", "[Unknown Error]" and the like.
function isReported(cell: string | undefined): boolean {
  return cell !== undefined && cell !== "" && !cell.startsWith("[");
}

function optionalNumber(cell: string | undefined): number | null {
  if (!isReported(cell)) return null;
  const value = Number(cell);
  return Number.isFinite(value) ? value : null;
}

// Slot planning depends on these, so a GPU whose memory cannot be read is an error, not a guess.
function requiredNumber(cell: string | undefined, field: string, line: string): number {
  const value = optionalNumber(cell);
  if (value === null) throw new Error(`${field} is "${cell}" in "${line}"`);
  return value;
}

/** One GPU's live usage, for sampling running tasks (sampler.ts). Values it does not report are null. */
export interface GpuUsage {
  index: number;
  uuid: string;
  utilizationPercent: number | null;
  memoryUsedMiB: number | null;
  powerW: number | null;
}

/** One compute process on a GPU, from `--query-compute-apps`. */
export interface GpuProcess {
  gpuUuid: string;
  pid: number;
  usedMemoryMiB: number | null;
}

/** Usage of every GPU from one `nvidia-smi --query-gpu` call; throws when it fails or finds no GPU. */
export async function readGpuUsage(options: ProbeOptions = {}): Promise<GpuUsage[]> {
  const stdout = await query("--query-gpu=index,uuid,utilization.gpu,memory.used,power.draw", options);
  return csvLines(stdout).map((cells) => {
    const [index, uuid, utilization, used, power] = cells;
    const line = cells.join(", ");
    if (cells.length !== 5) throw new Error(`expected 5 fields, got ${cells.length}: "${line}"`);
    return {
      index: requiredNumber(index, "index", line),
      uuid: uuid as string,
      utilizationPercent: optionalNumber(utilization),
      memoryUsedMiB: optionalNumber(used),
      powerW: optionalNumber(power),
    };
  });
}

/**
 * Every GPU's compute processes, by pid as the driver sees them (the host's pid namespace, so in
 * a container they may not be this machine's pids). Lines that are not a process are skipped.
 */
export async function readGpuProcesses(options: ProbeOptions = {}): Promise<GpuProcess[]> {
  const stdout = await query("--query-compute-apps=gpu_uuid,pid,used_memory", options);
  const processes: GpuProcess[] = [];
  for (const [gpuUuid, pid, used] of csvLines(stdout)) {
    const pidNumber = optionalNumber(pid);
    if (gpuUuid === undefined || pidNumber === null) continue;
    processes.push({ gpuUuid, pid: pidNumber, usedMemoryMiB: optionalNumber(used) });
  }
  return processes;
}

async function query(fields: string, options: ProbeOptions): Promise<string> {
  const command = options.command ?? "nvidia-smi";
  const args = [fields, "--format=csv,noheader,nounits"];
  const result = await run(command, args, options.env ?? process.env, options.timeoutMs ?? 5000);
  if ("noGpus" in result) throw new Error(`${command} ${fields}: no usable GPU`);
  if ("failure" in result) throw new Error(`${command} ${fields} ${result.failure}`, { cause: result.cause });
  return result.stdout;
}

function csvLines(stdout: string): string[][] {
  return stdout
    .split(/\r?\n/)
    .filter((line) => line.trim() !== "")
    .map((line) => line.split(",").map((cell) => cell.trim()));
}
