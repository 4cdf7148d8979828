-- Live metrics: the points a task reports while it runs (labsweep.report), one row per metric
-- and step. A later attempt's point at a step replaces an earlier attempt's (a resumed attempt
-- continues the curve, a restart from scratch overwrites it); a resend of the same attempt's
-- point changes nothing new, so the agent may resend after an outage.
CREATE TABLE metric_points (
  task_id BIGINT NOT NULL REFERENCES tasks (id),
  name    TEXT NOT NULL,
  step    BIGINT NOT NULL,
  value   DOUBLE PRECISION NOT NULL,
  attempt INTEGER NOT NULL,                -- attempts.number of the attempt that reported it
  time    DOUBLE PRECISION NOT NULL,       -- epoch seconds, as the task reported it
  PRIMARY KEY (task_id, name, step)
);

-- One row per (task, metric): how many points it holds and its highest step, so the bound on a
-- series (thinned past MAX_POINTS_PER_SERIES) and on a task's names cost a key lookup, not a count.
CREATE TABLE metric_series (
  task_id   BIGINT NOT NULL REFERENCES tasks (id),
  name      TEXT NOT NULL,
  points    INTEGER NOT NULL,
  last_step BIGINT NOT NULL,
  PRIMARY KEY (task_id, name)
);
CREATE INDEX metric_series_by_name ON metric_series (name, task_id);
