-- on_oom: the value a task's on_oom parameter was scaled to after attempts that ran out of memory
-- (NULL: the declared value), and how many such retries it has had. Its params_json keeps the
-- declared value: the task's identity and its CSV row's parameter column.
ALTER TABLE tasks ADD COLUMN oom_value DOUBLE PRECISION;
ALTER TABLE tasks ADD COLUMN oom_retries INTEGER NOT NULL DEFAULT 0;
