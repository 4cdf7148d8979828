-- Claiming walks pending tasks in id order: the index must end in id, or every claim sorts all
-- pending tasks. Backoff expiries get their own small partial index.
DROP INDEX tasks_claimable;
CREATE INDEX tasks_claimable ON tasks (state, runnable, active, id);
CREATE INDEX tasks_backoff ON tasks (not_before) WHERE state = 'pending' AND not_before > 0;
