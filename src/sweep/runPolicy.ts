import { parseDuration } from "./duration.js";
import { toLauncher } from "./launcherSetting.js";
import type { FileSettingsInput, PhaseInput } from "./schema.js";
import { DEFAULT_ARTIFACT_LIMIT_MB, DEFAULT_MAX_LOST, type Gate, type RunPolicy } from "./types.js";

// A phase's gate and run policy: its own settings over the file's, with labsweep's defaults.

export function toGate(input: PhaseInput["gate"]): Gate {
  if (input === undefined || input === "all_succeeded") return { kind: "all_succeeded" };
  return { kind: "min_success", ratio: input.min_success };
}

export function toPolicy(phase: PhaseInput, file: FileSettingsInput): RunPolicy {
  const timeout = phase.timeout ?? file.timeout;
  const backoff = phase.backoff ?? file.backoff;
  const resources = { ...file.resources, ...phase.resources };
  return {
    retries: phase.retries ?? file.retries ?? 3,
    maxLost: phase.max_lost ?? file.max_lost ?? DEFAULT_MAX_LOST,
    timeoutMs: timeout === undefined ? null : parseDuration(timeout),
    backoffMs: backoff === undefined ? 1000 : (parseDuration(backoff) as number),
    resources: {
      gpus: resources.gpus ?? null,
      gpuMemoryGb: resources.gpu_memory_gb ?? 0,
      cpus: resources.cpus ?? 1,
      tags: [...new Set(resources.tags ?? [])],
    },
    // The phase's launcher replaces the file's as a whole (`none` turns it off).
    launcher: toLauncher(phase.launcher ?? file.launcher),
    // Like launcher: a phase's list replaces the file's (`[]` collects nothing).
    artifacts: phase.artifacts ?? file.artifacts ?? [],
    artifactLimitMb: phase.artifact_limit_mb ?? file.artifact_limit_mb ?? DEFAULT_ARTIFACT_LIMIT_MB,
  };
}
