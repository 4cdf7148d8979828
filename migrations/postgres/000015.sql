-- Claims read only claimable tasks, in id order: a partial index holds just those, so a claim
-- removes one entry and a running task's finish touches the index not at all (the full index
-- moved an entry at both: a tenth of the coordinator's time per completion). Pending tasks that
-- wait for their gates get their own small index, for the counts of waiting tasks.
DROP INDEX tasks_claimable;
CREATE INDEX tasks_claimable ON tasks (id) WHERE state = 'pending' AND runnable = 1 AND active = 1;
CREATE INDEX tasks_waiting ON tasks (id) WHERE state = 'pending' AND runnable = 0;
