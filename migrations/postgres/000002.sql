-- Resources a successful attempt used, as the agent sampled them (agent/sampler.ts): JSON
-- {peak_rss_mb, gpu_util_mean, gpu_mem_peak_mb, energy_wh, samples}; NULL for tasks found in a
-- results CSV or finished before this column existed.
ALTER TABLE tasks ADD COLUMN usage_json TEXT;
