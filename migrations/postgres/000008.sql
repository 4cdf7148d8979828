-- How many times each task's attempt was lost with its worker (an agent or `labsweep run` that
-- died or stopped answering) since it last got a fresh start: a task that takes its worker down
-- every time fails after `max_lost` losses instead of being rerun for ever. `retry` resets it.
ALTER TABLE tasks ADD COLUMN losses INTEGER NOT NULL DEFAULT 0;
