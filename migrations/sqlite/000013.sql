-- Notifications (the sweep's `notify:` entries) owed to their destinations: an outbox, one row per
-- entry and happening. A task's final failure and a lost agent are written in the transaction that
-- records them; a phase or the sweep finishing and a failure rate crossed are states, written by a
-- check any coordinator may repeat (after finishes and at every start). (target, about) is unique,
-- so each is recorded once however often it is checked. A row is marked sent after delivery: a
-- crash in between sends it again (at least once; `uid` is the `id` receivers dedupe by).
CREATE TABLE notifications (
  id         INTEGER PRIMARY KEY,
  uid        TEXT NOT NULL,                -- idempotency key: the payload's `id`, stable across resends
  target     TEXT NOT NULL,                -- which notify entry: a hash of it (no URL in the ledger)
  about      TEXT NOT NULL,                -- what happened, e.g. task_failed:12:340 (once per target)
  event      TEXT NOT NULL,                -- sweep_finished | phase_finished | task_failed | agent_lost | failure_rate
  payload    TEXT NOT NULL,                -- the event's fields, JSON
  created_at INTEGER NOT NULL,             -- epoch ms
  state      TEXT NOT NULL DEFAULT 'owed', -- owed | sent | gave_up
  tries      INTEGER NOT NULL DEFAULT 0,   -- deliveries started
  next_try   INTEGER NOT NULL DEFAULT 0,   -- epoch ms: the backoff, or a sender's claim while it sends
  last_error TEXT,
  sent_at    INTEGER
);
CREATE UNIQUE INDEX notifications_about ON notifications (target, about);
CREATE INDEX notifications_owed ON notifications (next_try, id) WHERE state = 'owed';
