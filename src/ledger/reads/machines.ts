import type { AgentState } from "../agents.js";
import type { Db } from "../db.js";

/** A registered agent as the dashboard's machines view reads it (lost ones too). */
export interface AgentRecord {
  id: string;
  name: string;
  host: string;
  info_json: string;
  last_seen: number;
  state: AgentState;
  lost_at: number | null;
  lost_reason: string | null;
}

/** Every registered agent, in registration order. */
export async function agentRecords(db: Db): Promise<AgentRecord[]> {
  return db.all<AgentRecord>(
    "SELECT id, name, host, info_json, last_seen, state, lost_at, lost_reason FROM agents ORDER BY registered_at",
  );
}

/** An attempt that has not ended, with its task's parameters. */
export interface OpenAttempt {
  id: number;
  task_id: number;
  number: number;
  worker: string;
  started_at: number;
  gpu_ids: string | null;
  params_json: string;
  /** Null while the task is held ahead and its process has not started. */
  pid: number | null;
}

/** Attempts not ended yet, oldest first. */
export async function openAttempts(db: Db): Promise<OpenAttempt[]> {
  return db.all<OpenAttempt>(
    `SELECT a.id, a.task_id, a.number, a.worker, a.started_at, a.gpu_ids, t.params_json, a.pid
       FROM attempts a JOIN tasks t ON t.id = a.task_id
      WHERE a.ended_at IS NULL ORDER BY a.started_at`,
  );
}

/** The capabilities (info_json) of connected agents. */
export async function connectedAgentInfos(db: Db): Promise<string[]> {
  const rows = await db.all<{ info_json: string }>("SELECT info_json FROM agents WHERE state = 'connected'");
  return rows.map((row) => row.info_json);
}
