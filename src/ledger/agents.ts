import type { Db } from "./db.js";
import { recordEvent } from "./recordEvent.js";

export type AgentState = "connected" | "disconnected" | "lost" | "exited";

export interface AgentRow {
  id: string;
  name: string;
  host: string;
  info_json: string;
  registered_at: number;
  last_seen: number;
  state: AgentState;
  lost_at: number | null;
  lost_reason: string | null;
}

/** Records (or refreshes) an agent's capability record; it counts as connected. */
export async function registerAgent(
  db: Db,
  agent: { id: string; name: string; host: string; info: unknown },
  now: number,
): Promise<void> {
  await db.run(
    `INSERT INTO agents (id, name, host, info_json, registered_at, last_seen, state)
     VALUES ($1, $2, $3, $4, $5, $5, 'connected')
     ON CONFLICT (id) DO UPDATE SET name = excluded.name, host = excluded.host, info_json = excluded.info_json,
       registered_at = excluded.registered_at, last_seen = excluded.last_seen, state = 'connected',
       lost_at = NULL, lost_reason = NULL`,
    [agent.id, agent.name, agent.host, JSON.stringify(agent.info), now],
  );
  await recordEvent(db, now, "agent_registered", null, { agent: agent.id, host: agent.host });
}

/** Notes that an agent was heard from; a lost agent that speaks again is connected again. */
export async function touchAgent(
  db: Db,
  agentId: string,
  now: number,
  state: AgentState = "connected",
): Promise<boolean> {
  const updated = await db.run("UPDATE agents SET last_seen = $2, state = $3 WHERE id = $1", [
    agentId,
    now,
    state,
  ]);
  return updated.changes > 0;
}

/** Marks an agent that said goodbye (a clean exit): it is not lost when its connection closes. */
export async function markAgentExited(db: Db, agentId: string, now: number): Promise<boolean> {
  const updated = await db.run("UPDATE agents SET state = 'exited', last_seen = $2 WHERE id = $1", [
    agentId,
    now,
  ]);
  if (updated.changes > 0) await recordEvent(db, now, "agent_exited", null, { agent: agentId });
  return updated.changes > 0;
}

/** Marks an agent lost and says why; its running attempts are requeued by the caller. */
export async function markAgentLost(db: Db, agentId: string, reason: string, now: number): Promise<void> {
  await db.run(
    "UPDATE agents SET state = 'lost', lost_at = $2, lost_reason = $3 WHERE id = $1 AND state != 'exited'",
    [agentId, now, reason],
  );
  await recordEvent(db, now, "agent_lost", null, { agent: agentId, reason });
}

export async function getAgent(db: Db, agentId: string): Promise<AgentRow | undefined> {
  return db.one<AgentRow>("SELECT * FROM agents WHERE id = $1", [agentId]);
}

/** Every agent with its running attempts. */
export async function listAgents(db: Db): Promise<Array<AgentRow & { running: number }>> {
  return db.all<AgentRow & { running: number }>(
    `SELECT g.*, (SELECT count(*) FROM attempts a WHERE a.worker = g.id AND a.ended_at IS NULL) AS running
       FROM agents g ORDER BY g.registered_at`,
  );
}
