-- Agents that registered with a coordinator: what they offer, and whether they are still there.
CREATE TABLE agents (
  id            TEXT PRIMARY KEY,            -- stable across an agent's restarts
  name          TEXT NOT NULL,
  host          TEXT NOT NULL,
  info_json     TEXT NOT NULL,               -- the capability record it registered
  registered_at BIGINT NOT NULL,
  last_seen     BIGINT NOT NULL,
  state         TEXT NOT NULL DEFAULT 'connected', -- connected | disconnected | lost | exited
  lost_at       BIGINT,
  lost_reason   TEXT                          -- connection closed | lease expired
);
