-- The dashboard's task table pages by keyset (sort value, id) and must stay fast at a million
-- tasks: one index per sortable order. A large sync inserts tasks in id order, pending and
-- unfinished, so these indexes grow at their ends; the finish-time and wall-time indexes are
-- partial and get an entry only when a task finishes.
-- By state: a state filter in id order, and the succeeded tasks that results and plots read.
CREATE INDEX tasks_by_state ON tasks (state, id);
-- By phase: sorting by phase (then state), and per-phase counts from the index alone.
CREATE INDEX tasks_by_phase ON tasks (phase, state, runnable, active, id);
-- Sorting by finish time (also the recent-completion rate and new results) and by wall time.
CREATE INDEX tasks_by_finished ON tasks (finished_at, id) WHERE finished_at IS NOT NULL;
CREATE INDEX tasks_by_wall ON tasks (wall_seconds, id) WHERE wall_seconds IS NOT NULL;
