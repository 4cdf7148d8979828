-- Each results file as the last write the ledger recorded left it. A file whose size or
-- modification time differs was changed behind the writer's back — most often by a writer that
-- crashed (or a replica killed) between its append and its commit — so the writer reads it for
-- rows it already holds before appending: no row is ever written twice.
CREATE TABLE result_files (
  path     TEXT PRIMARY KEY,
  size     BIGINT NOT NULL,
  mtime_ns TEXT NOT NULL
);
