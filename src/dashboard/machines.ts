import type { AgentState } from "../ledger/agents.js";
import type { Db } from "../ledger/db.js";
import { agentRecords, connectedAgentInfos, openAttempts } from "../ledger/reads/machines.js";
import type { AgentCapabilities } from "../protocol/http.js";
import type { GpuReading, GpuTelemetry } from "../telemetry/gpuTelemetry.js";

/** The machine `labsweep run` works on (it registers no agent row). */
export interface LocalMachine {
  /** The in-process agent's worker name, as recorded in its attempts. */
  id: string;
  name: string;
  host: string;
  slots: number;
  gpus: Array<{ index: number; name: string; memoryTotalMiB: number }>;
  since: number;
}

export interface MachineTask {
  taskId: number;
  attemptId: number;
  attempt: number;
  startedAt: number;
  gpuIds: number[];
  params: Record<string, unknown>;
  /**
   * False while the task waits on its machine for a slot: agents running short tasks lease the
   * next one ahead (agent.ts), so it holds no slot yet.
   */
  started: boolean;
}

export interface Machine {
  id: string;
  name: string;
  host: string;
  kind: "agent" | "local";
  state: AgentState;
  /** Why it was lost, when it was. */
  lostReason: string | null;
  lostAt: number | null;
  /** Last heartbeat or request (epoch ms). */
  lastSeen: number;
  slots: number;
  gpus: Array<{ index: number; name: string; memoryTotalMiB: number }>;
  running: MachineTask[];
  /** Recent GPU readings, oldest first. */
  telemetry: GpuReading[];
}

/** Every machine: registered agents (lost ones too) and the local one, with what runs where. */
export async function listMachines(
  db: Db,
  telemetry: GpuTelemetry,
  local: LocalMachine[],
  now = Date.now(),
): Promise<Machine[]> {
  const agents = await agentRecords(db);
  const open = await openAttempts(db);
  const running = new Map<string, MachineTask[]>();
  for (const attempt of open) {
    const list = running.get(attempt.worker) ?? [];
    list.push({
      taskId: Number(attempt.task_id),
      attemptId: Number(attempt.id),
      attempt: Number(attempt.number),
      startedAt: Number(attempt.started_at),
      gpuIds: gpuIdsOf(attempt.gpu_ids),
      params: JSON.parse(attempt.params_json) as Record<string, unknown>,
      started: attempt.pid !== null,
    });
    running.set(attempt.worker, list);
  }
  const machines: Machine[] = local.map((machine) => ({
    id: machine.id,
    name: machine.name,
    host: machine.host,
    kind: "local",
    state: "connected",
    lostReason: null,
    lostAt: null,
    lastSeen: now,
    slots: machine.slots,
    gpus: machine.gpus,
    running: running.get(machine.id) ?? [],
    telemetry: telemetry.series(machine.id),
  }));
  for (const agent of agents) {
    const info = JSON.parse(agent.info_json) as Partial<AgentCapabilities>;
    machines.push({
      id: agent.id,
      name: agent.name,
      host: agent.host,
      kind: "agent",
      state: agent.state,
      lostReason: agent.lost_reason,
      lostAt: agent.lost_at === null ? null : Number(agent.lost_at),
      lastSeen: Number(agent.last_seen),
      slots: Number(info.slots ?? 0),
      gpus: (info.gpus ?? []).map((gpu) => ({
        index: gpu.index,
        name: gpu.name,
        memoryTotalMiB: gpu.memoryTotalMiB,
      })),
      running: running.get(agent.id) ?? [],
      telemetry: telemetry.series(agent.id),
    });
  }
  return machines;
}

/** Slots of the machines that can take work now: connected agents and the local machine. */
export async function workingSlots(db: Db, local: LocalMachine[]): Promise<number> {
  let slots = local.reduce((sum, machine) => sum + machine.slots, 0);
  for (const info of await connectedAgentInfos(db))
    slots += Number((JSON.parse(info) as { slots?: number }).slots ?? 0);
  return slots;
}

function gpuIdsOf(text: string | null): number[] {
  if (!text) return [];
  return text
    .split(",")
    .map((part) => Number(part.trim()))
    .filter((value) => Number.isInteger(value));
}
