-- Provenance (issue 15): the git state of the code each attempt ran, as its agent reported it —
-- the commit, whether tracked files differed from it, and a SHA-256 of that diff (NULL when clean)
-- — and, copied from its successful attempt as host and gpu_ids are, the task's (its CSV row's
-- git_commit, git_dirty, git_diff_sha256). All NULL outside a git repository.
ALTER TABLE attempts ADD COLUMN git_commit TEXT;
ALTER TABLE attempts ADD COLUMN git_dirty INTEGER;
ALTER TABLE attempts ADD COLUMN git_diff_sha256 TEXT;
ALTER TABLE tasks ADD COLUMN git_commit TEXT;
ALTER TABLE tasks ADD COLUMN git_dirty INTEGER;
ALTER TABLE tasks ADD COLUMN git_diff_sha256 TEXT;

-- Snapshots (`snapshot: true`): copies of a config's dir under <state>/snapshots/<n>/ that its
-- tasks run from, so code edited during a sweep does not change tasks that have not started. One
-- current copy per config file, taken when the sweep is created and replaced by `labsweep run
-- --refresh-snapshot`; a replaced copy is deleted (removed_at) once no attempt of its config runs.
CREATE TABLE snapshots (
  id          INTEGER PRIMARY KEY,
  config_file TEXT NOT NULL,
  dir         TEXT NOT NULL,                -- the copy, absolute
  git_json    TEXT,                         -- the GitState it was taken at; NULL outside git
  taken_at    INTEGER NOT NULL,             -- epoch ms
  current     INTEGER NOT NULL DEFAULT 1,   -- 1: the config's tasks lease with this copy as their cwd
  removed_at  INTEGER                       -- epoch ms: the copy was deleted
);
CREATE INDEX snapshots_current ON snapshots (config_file) WHERE current = 1;
