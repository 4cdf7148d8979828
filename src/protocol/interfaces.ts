/**
 * The words agent, coordinator and ledger share, and the types they exchange. This folder
 * imports nothing but `sweep/` types, so every floor may import it.
 *
 * Terminology:
 *
 * - sweep: the grid of experiments one config file declares (see sweep/).
 * - task: one point of the grid, run exactly once to success (`Task`).
 * - phase: a named part of a sweep; a task may belong to several.
 * - placement: one phase a task belongs to, with that phase's output dir (`Placement`).
 * - ledger: the durable store of tasks, attempts and events (SQLite or PostgreSQL).
 * - coordinator: the process that owns the ledger and hands tasks out (`labsweep serve`, or
 *   `labsweep run` in-process).
 * - agent: a process that runs tasks on one machine and reports back; identified by its
 *   `agentId`. The ledger's `worker` column holds that same id (the column keeps its name; in
 *   code, say agent).
 * - slot: room for one task on an agent (`--slots`); what else is free is its `Capacity`.
 * - lease: a task handed to one agent for one attempt, renewed by heartbeats until it ends or
 *   runs out (`Lease`). "Claim" and "leased task" are old names for it; the ledger operation
 *   that makes one is `claimTask` (claiming is the ledger's verb).
 * - attempt: one run of a task's command; it ends with an `AttemptOutcome`.
 * - outcome: how an attempt ended (succeeded, failed, timeout, oom, hung, interrupted,
 *   preempted, lost)..
 * - stop: the agent ending an attempt it runs (timeout, hang, cancel, its own shutdown): the
 *   attempt's stop file, its phase's stop_signal, SIGKILL after stop_grace.
 * - preempted: stopped as its agent shut down (a scheduler's SIGTERM, Ctrl-C) with a checkpoint
 *   left to resume from; like interrupted, it spends no retry.
 * - usage: what a successful attempt used, as the agent sampled it (`TaskUsage`).
 * - report: an outcome on its way from an agent to the coordinator (kept in the agent's outbox
 *   until accepted).
 * - point: the metrics one `labsweep.report(step, …)` call gave at a step, read by the agent from
 *   the attempt's events file and relayed to the coordinator (`MetricPoint`). Users say "report".
 * - series: a task's points of one metric, by step: its learning curve (ledger `metric_points`).
 * - provenance: the git state of the code an attempt ran (`GitState`); a snapshot is a copy of a
 *   config's dir taken when its sweep was created, which its tasks run from (`TaskSnapshot`).
 */
import type { Params, Placement, RunPolicy } from "../sweep/types.js";

/** Task states as stored. `blocked`: every phase it belongs to failed its gate. */
export type TaskState = "pending" | "running" | "succeeded" | "failed" | "blocked" | "cancelled";

/** A task as the scheduler and runners see it. */
export interface Task {
  id: number;
  signature: string;
  params: Params;
  command: string;
  cwd: string;
  configFile: string;
  policy: RunPolicy;
  state: TaskState;
  attempts: number;
  /**
   * Its phase's `env` variables, rendered for it (sweep/envSetting.ts), set in its process's
   * environment. Absent when the phase has none.
   */
  env?: Record<string, string>;
  /**
   * Set when `cwd` is a snapshot (`snapshot: true`): a copy of its config's dir, with the
   * provenance it was taken at. Absent otherwise: the agent reads git in `cwd` as it starts.
   */
  snapshot?: TaskSnapshot;
}

/**
 * The git state of the code an attempt ran: the commit checked out, and whether tracked files
 * differed from it (`git diff HEAD`; untracked files do not count, as in `git describe --dirty`),
 * with a SHA-256 of that diff so rows that ran the same uncommitted code can be told apart.
 */
export interface GitState {
  /** The full sha of HEAD. */
  commit: string;
  dirty: boolean;
  /** SHA-256 (hex) of `git diff HEAD --binary`; null when clean. */
  diffSha256: string | null;
}

/** The snapshot a task's `cwd` is: the config's dir it copies, and the git state it was taken at. */
export interface TaskSnapshot {
  /** The config's dir (on the coordinator's machine), which the copy was taken of. */
  sourceDir: string;
  /** Null when that dir was not in a git repository (or git was absent). */
  git: GitState | null;
}

/**
 * A task handed to one agent for one attempt: the same object whether the ledger hands it to an
 * in-process agent or the coordinator sends it over HTTP (`LeaseResponse`).
 */
export interface Lease {
  task: Task;
  attemptId: number;
  attemptNumber: number;
  gpuIds: number[];
  /** Phases and output dirs of the task, first-declared phase first. */
  placements: Placement[];
}

/** What a successful attempt used, as the agent sampled it (see agent/sampler.ts); tasks.usage_json. */
export interface TaskUsage {
  /** Null when no sample was taken (a task shorter than the sampler's first delay). */
  peak_rss_mb: number | null;
  gpu_util_mean: number | null;
  gpu_mem_peak_mb: number | null;
  energy_wh: number | null;
  samples: number;
}

/**
 * How an attempt ended, with the provenance of the code it ran (`git`: absent when not in a git
 * repository, or from an agent from before provenance).
 */
export type AttemptOutcome = EndedAs & { git?: GitState };

type EndedAs =
  | { kind: "succeeded"; metrics: Record<string, unknown>; wallSeconds: number; usage?: TaskUsage }
  | {
      /** hung: stopped by hang_timeout; like a timeout, it spends a retry. */
      kind: "failed" | "timeout" | "hung";
      exitCode: number | null;
      signal: string | null;
      error: string;
      wallSeconds: number;
    }
  /**
   * Failed for want of memory: a GPU framework's out-of-memory message in its log, or the
   * kernel's OOM killer (agent/outOfMemory.ts). A phase's `on_oom` retries it with a smaller
   * parameter; without one it is a failure like any other, reported as out of memory.
   */
  | {
      kind: "oom";
      exitCode: number | null;
      signal: string | null;
      error: string;
      wallSeconds: number;
      /** What showed it: the log's message ("CUDA out of memory"), or "kernel" for the OOM killer. */
      oom: string;
    }
  /**
   * Stopped by the user, preempted, or lost with its agent: back to pending at once without
   * spending a retry. How a stopped process ended is kept on the attempt when known.
   */
  | {
      kind: "interrupted" | "preempted" | "lost";
      error: string;
      exitCode?: number | null;
      signal?: string | null;
    };

/** One GPU's reading at one moment, as an agent (or `labsweep run`'s sampler) reported it. */
export interface GpuSample {
  index: number;
  utilizationPct: number;
  memoryUsedMiB: number;
  memoryTotalMiB: number;
}

/**
 * The metrics one `labsweep.report(step, …)` call gave, as relayed: names flattened
 * (`flattenMetrics`), values finite numbers. `time` is epoch seconds.
 */
export interface MetricPoint {
  step: number;
  time: number;
  metrics: Record<string, number>;
}

/** Points of one attempt, on their way from the agent's relay to the coordinator. */
export interface AttemptPoints {
  attemptId: number;
  points: MetricPoint[];
}
