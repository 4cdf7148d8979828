-- Output dirs whose results file the writer could not write on its last try, and why (an
-- unwritable dir, a malformed CSV). A row exists only while the dir fails: the writer deletes it
-- once a write succeeds. Kept in the ledger so `labsweep status` (another process) and the
-- dashboard can show it; the dir's rows stay owed in result_rows meanwhile.
CREATE TABLE result_dir_errors (
  output_dir TEXT PRIMARY KEY,
  error      TEXT NOT NULL,
  since      BIGINT NOT NULL,
  tried_at   BIGINT NOT NULL
);
