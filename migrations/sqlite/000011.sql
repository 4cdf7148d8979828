-- Artifacts: files a task's successful attempt handed back (its phase's `artifacts:` globs),
-- stored under each of the task's output dirs at {output_dir}/artifacts/<signature>/<path>.
-- One attempt's files per task: a row is written once its file is in place and checked (size and
-- SHA-256), and a later attempt's first file replaces every row (and file) of an earlier one,
-- so a task's artifacts never mix two attempts.
CREATE TABLE artifacts (
  task_id    INTEGER NOT NULL REFERENCES tasks (id),
  attempt_id INTEGER NOT NULL,
  path       TEXT NOT NULL,                -- relative to the task's artifact dir, '/'-separated
  size       INTEGER NOT NULL,
  sha256     TEXT NOT NULL,                -- lowercase hex
  stored_at  INTEGER NOT NULL,             -- epoch ms
  PRIMARY KEY (task_id, path)
);
