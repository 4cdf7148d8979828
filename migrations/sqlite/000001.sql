-- The task ledger: the source of truth for a sweep. Config files and result CSVs are inputs;
-- everything that happened is recorded here first.

CREATE TABLE phases (
  name        TEXT PRIMARY KEY,
  config_file TEXT NOT NULL,
  cwd         TEXT NOT NULL,               -- the config file's dir: commands run here
  policy_json TEXT NOT NULL,               -- retries, timeout, backoff, resources of tasks it declares
  position    INTEGER NOT NULL,            -- declaration order across the loaded configs
  after_json  TEXT NOT NULL,               -- ["phaseA", …]
  gate_json   TEXT NOT NULL,               -- {"kind":"all_succeeded"} | {"kind":"min_success","ratio":0.9}
  state       TEXT NOT NULL DEFAULT 'waiting', -- waiting | open | blocked
  reason      TEXT,                        -- why it waits or is blocked, for `status`
  active      INTEGER NOT NULL DEFAULT 1   -- 0 once no loaded config declares it
);

-- Tasks are kept narrow (a million-task grid is a million rows): what every task of a phase
-- shares lives in `phases`. Signatures are unique by construction — syncSweep is the only
-- writer, holds the ledger's write lock, and de-duplicates in memory — so they carry no index,
-- whose random-order inserts would dominate the cost of a large sync.
CREATE TABLE tasks (
  id           INTEGER PRIMARY KEY,
  signature    TEXT NOT NULL,              -- hash of canonical params + command template
  params_json  TEXT NOT NULL,
  command      TEXT NOT NULL,              -- rendered, shell-quoted
  phase        TEXT NOT NULL,              -- the first phase that declares it: its cwd and policy
  state        TEXT NOT NULL DEFAULT 'pending', -- pending | running | succeeded | failed | blocked | cancelled
  runnable     INTEGER NOT NULL DEFAULT 0, -- 1 while one of its phases is open
  attempts     INTEGER NOT NULL DEFAULT 0, -- attempts that counted against retries
  not_before   INTEGER NOT NULL DEFAULT 0, -- epoch ms; retry backoff
  attempt_id   INTEGER,                    -- the running attempt (fencing)
  active       INTEGER NOT NULL DEFAULT 1, -- 0 once no loaded config lists it
  result_json  TEXT,                       -- metrics
  wall_seconds REAL,
  host         TEXT,
  gpu_ids      TEXT,
  finished_at  INTEGER,
  origin       TEXT                        -- 'run' | 'csv' (found complete in a results CSV)
);
CREATE INDEX tasks_claimable ON tasks (state, runnable, not_before, id);

CREATE TABLE placements (
  task_id    INTEGER NOT NULL REFERENCES tasks (id),
  phase      TEXT NOT NULL,
  output_dir TEXT NOT NULL,
  active     INTEGER NOT NULL DEFAULT 1,
  PRIMARY KEY (task_id, phase, output_dir)
) WITHOUT ROWID;
CREATE INDEX placements_by_phase ON placements (phase, task_id);
CREATE INDEX placements_by_dir ON placements (output_dir, task_id);

-- Outbox of result rows owed to {output_dir}/final_results.csv: inserted in the same transaction
-- that records success, marked written only after the row is on disk.
CREATE TABLE result_rows (
  task_id    INTEGER NOT NULL REFERENCES tasks (id),
  output_dir TEXT NOT NULL,
  phase      TEXT NOT NULL,
  written    INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (task_id, output_dir)
) WITHOUT ROWID;
CREATE INDEX result_rows_owed ON result_rows (written, output_dir);

CREATE TABLE attempts (
  id            INTEGER PRIMARY KEY,
  task_id       INTEGER NOT NULL REFERENCES tasks (id),
  number        INTEGER NOT NULL,
  worker        TEXT NOT NULL,
  host          TEXT,
  gpu_ids       TEXT,
  started_at    INTEGER NOT NULL,
  lease_expires INTEGER,
  ended_at      INTEGER,
  outcome       TEXT,                      -- succeeded | failed | timeout | interrupted | lost
  exit_code     INTEGER,
  signal        TEXT,
  error         TEXT,
  pid           INTEGER,
  log_path      TEXT
);
CREATE INDEX attempts_by_task ON attempts (task_id);
CREATE INDEX attempts_open ON attempts (ended_at) WHERE ended_at IS NULL;

CREATE TABLE events (
  id      INTEGER PRIMARY KEY,
  at      INTEGER NOT NULL,
  kind    TEXT NOT NULL,
  task_id INTEGER,
  detail  TEXT
);
