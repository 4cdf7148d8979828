import { availableParallelism } from "node:os";
import type { Logger } from "../log/logger.js";
import type { AgentCapabilities } from "../protocol/http.js";
import type { GpuSample } from "../protocol/interfaces.js";
import { describeMachine, type ProbeSpec } from "./capabilities.js";
import { type GpuLockResult, lockGpus } from "./gpuLocks.js";
import { type GpuInfo, probeGpus, readGpuUsage } from "./gpuProbe.js";
import { planSlots, type Slot } from "./slots.js";

/** What decides which of this machine's GPUs and slots an agent takes (see RemoteAgentOptions). */
export interface MachineOptions {
  slots?: number;
  gpus?: number[];
  tags?: string[];
  name?: string;
  probes?: ProbeSpec[];
  probeTimeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  lockDir?: string;
}

/** The machine an agent runs on, as it probed and locked it. */
export interface Machine {
  /** Every GPU nvidia-smi reports (tasks on CPU slots get none of them). */
  allGpus: GpuInfo[];
  slots: Slot[];
  /** The GPUs this agent holds. */
  locks: GpuLockResult;
  capabilities: AgentCapabilities;
}

/** This machine's GPUs (those it could lock), slots and capability record. */
export async function probeMachine(agentId: string, options: MachineOptions, log: Logger): Promise<Machine> {
  const env = options.env ?? process.env;
  const allGpus = await probeGpus({ env });
  const { slots, locks } = planGpus(allGpus, options, log);
  try {
    const capabilities = await describeMachine({
      agentId,
      name: options.name,
      slots: slots.length,
      gpus: locks.locked,
      allGpus,
      tags: options.tags,
      probes: options.probes,
      probeOptions: { env, timeoutMs: options.probeTimeoutMs },
    });
    return { allGpus, slots, locks, capabilities };
  } catch (error) {
    locks.release();
    throw error;
  }
}

/** GPUs this agent may use: `--gpus`, enough free memory, and not locked by another agent. */
function planGpus(
  allGpus: GpuInfo[],
  options: MachineOptions,
  log: Logger,
): { slots: Slot[]; locks: GpuLockResult } {
  const cpuCount = availableParallelism();
  const qualifying = new Set(
    planSlots({ gpus: allGpus, cpuCount, gpuFilter: options.gpus }).flatMap((slot) => slot.gpuIndices),
  );
  const candidates = allGpus.filter((gpu) => qualifying.has(gpu.index));
  const want = Math.min(options.slots ?? candidates.length, candidates.length);
  const locks = lockGpus(candidates, { dir: options.lockDir, want });
  for (const { gpu, owner } of locks.busy)
    log.info(`GPU ${gpu.index} (${gpu.uuid}) is in use by another agent (pid ${owner}); skipping it`);
  if (candidates.length > 0 && locks.locked.length === 0 && options.gpus !== undefined) {
    locks.release();
    throw new Error(
      `every GPU asked for (--gpus ${options.gpus.join(",")}) is in use by another labsweep agent on this machine`,
    );
  }
  if (candidates.length > 0 && locks.locked.length === 0)
    log.info(`every GPU is in use by other agents; running CPU slots only`);
  const slots = planSlots({ gpus: locks.locked, cpuCount, slotsOverride: options.slots });
  return { slots, locks };
}

/** One line for the log: "gpu-box (id …): 2 slot(s) on GPU 0,1; tags a100; probes: torch ok". */
export function describeCapabilities(capabilities: AgentCapabilities): string {
  const gpus =
    capabilities.gpus.length > 0 ? `GPU ${capabilities.gpus.map((gpu) => gpu.index).join(",")}` : "CPU";
  const tags = capabilities.tags.length > 0 ? `; tags ${capabilities.tags.join(", ")}` : "";
  const probes = Object.entries(capabilities.probes)
    .map(([name, ok]) => `${name} ${ok ? "ok" : "failed"}`)
    .join(", ");
  return `${capabilities.name} (id ${capabilities.agentId}): ${capabilities.slots} slot(s) on ${gpus}${tags}${probes ? `; probes: ${probes}` : ""}`;
}

/** The agent's GPUs now (utilisation, memory), for the dashboard; none if nvidia-smi fails. */
export async function gpuSamples(machine: Machine, env = process.env): Promise<GpuSample[] | undefined> {
  if (machine.capabilities.gpus.length === 0) return undefined;
  try {
    const usage = await readGpuUsage({ env });
    const totals = new Map(machine.allGpus.map((gpu) => [gpu.index, gpu.memoryTotalMiB]));
    const mine = new Set(machine.capabilities.gpus.map((gpu) => gpu.index));
    return usage
      .filter((gpu) => mine.has(gpu.index))
      .map((gpu) => ({
        index: gpu.index,
        utilizationPct: gpu.utilizationPercent ?? 0,
        memoryUsedMiB: gpu.memoryUsedMiB ?? 0,
        memoryTotalMiB: totals.get(gpu.index) ?? 0,
      }));
  } catch {
    return undefined;
  }
}
