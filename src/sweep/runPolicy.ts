import { resolve } from "node:path";
import { parseDuration } from "./duration.js";
import { toLauncher } from "./launcherSetting.js";
import type { FileSettingsInput, PhaseInput } from "./schema.js";
import { type StopSignal, toStopSignal } from "./stopSignal.js";
import { DEFAULT_ARTIFACT_LIMIT_MB, DEFAULT_MAX_LOST, type Gate, type RunPolicy } from "./types.js";

// A phase's gate and run policy: its own settings over the file's, with labsweep's defaults.

export function toGate(input: PhaseInput["gate"]): Gate {
  if (input === undefined || input === "all_succeeded") return { kind: "all_succeeded" };
  return { kind: "min_success", ratio: input.min_success };
}

export function toPolicy(phase: PhaseInput, file: FileSettingsInput, baseDir: string): RunPolicy {
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
    ...stopPolicy(phase, file, baseDir),
  };
}

/**
 * checkpoint_root, stop_signal, stop_grace and hang_timeout: only the ones a config sets, so a
 * policy (and the ledger's copy of it) reads as before where none is used.
 */
function stopPolicy(
  phase: PhaseInput,
  file: FileSettingsInput,
  baseDir: string,
): Pick<RunPolicy, "checkpointRoot" | "stopSignal" | "stopGraceMs" | "hangTimeoutMs"> {
  const root = phase.checkpoint_root ?? file.checkpoint_root;
  const signal = phase.stop_signal ?? file.stop_signal;
  const grace = phase.stop_grace ?? file.stop_grace;
  const hang = phase.hang_timeout ?? file.hang_timeout;
  return {
    ...(root !== undefined && { checkpointRoot: resolve(baseDir, root) }),
    ...(signal !== undefined && { stopSignal: toStopSignal(signal) as StopSignal }),
    ...(grace !== undefined && { stopGraceMs: parseDuration(grace) as number }),
    ...(hang !== undefined && { hangTimeoutMs: parseDuration(hang) as number }),
  };
}
