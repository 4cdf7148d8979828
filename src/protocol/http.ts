/**
 * The coordinator's HTTP API (`/api/v1`), shared by the server and the agents' client so the
 * two cannot drift. JSON bodies; bearer tokens: the agent token for everything that changes
 * state, the viewer token (or the agent token, or a loopback request) for reads.
 */

import type { DeclaredArtifact } from "./artifacts.js";
import type { Capacity } from "./capacity.js";
import type { AttemptOutcome, AttemptPoints, GpuSample, Lease } from "./interfaces.js";

export const API_PREFIX = "/api/v1";

/**
 * The largest request body the coordinator takes by default (413 above it). Agents size what
 * they send by it: a lease carries reports up to half of it, the rest go in later requests.
 */
export const REQUEST_BODY_LIMIT_BYTES = 1024 * 1024;

/** What an agent tells the coordinator about itself (also printed by `labsweep doctor`). */
export interface AgentCapabilities {
  /** Stable across restarts of the same agent (kept in the agent's state dir). */
  agentId: string;
  name: string;
  host: string;
  pid: number;
  slots: number;
  cpus: number;
  ramMb: number;
  gpus: Array<{
    index: number;
    uuid: string;
    name: string;
    memoryTotalMiB: number;
    memoryFreeMiB: number;
  }>;
  driverVersion: string | null;
  cudaVersion: string | null;
  tags: string[];
  /** Configured probes, e.g. {"torch": true} for `python3 -c "import torch"`. */
  probes: Record<string, boolean>;
  /** Set when the agent runs as an element of a SLURM job array. */
  slurm?: { jobId: string; arrayTaskId: string | null } | null;
}

/** POST /agents */
export type RegisterRequest = AgentCapabilities;
export interface RegisterResponse {
  leaseMs: number;
  heartbeatMs: number;
  /** Attempts the coordinator still thinks this agent runs (from before a restart or a blip). */
  openAttempts: number[];
}

/**
 * POST /lease — held open up to waitMs until a task fits (long-poll). It may carry finish reports
 * from the agent's outbox: they are recorded first (as POST /attempts/:id/finish would), so one
 * round trip both reports finished tasks and fills the slots they freed, and a task whose report
 * arrives here is never handed out again.
 */
export interface LeaseRequest {
  agentId: string;
  capacity: Capacity;
  /** How long the coordinator may hold the request when nothing fits yet. */
  waitMs: number;
  /** Lease up to this many tasks at once, each fitting what the previous ones left. (Default: 1) */
  max?: number;
  /** Finish reports, recorded before leasing. (Default: none) */
  reports?: AttemptReport[];
}

/** A finish report travelling in a batch: the attempt it is about, and the report itself. */
export interface AttemptReport {
  attemptId: number;
  outcome: AttemptOutcome;
  logTail?: string;
}

/** What became of one report of a batch: recorded (or already recorded), or refused for good. */
export type ReportVerdict = { attemptId: number; accepted: boolean } | { attemptId: number; error: string };

export interface LeaseResponse {
  /** The first of `leases` when the request had no `max` (one task at a time); else null. */
  lease: Lease | null;
  leases: Lease[];
  /** One verdict per report the request carried, in order. */
  reports: ReportVerdict[];
  /** True when nothing left in the sweep could ever run on this agent: it may exit. */
  done: boolean;
  /**
   * With `done` while unfinished tasks remain: per phase, which resource this agent lacks
   * ("phase big (4 tasks): needs 30 GB of free GPU memory; the largest GPU has 24 GB free").
   * (Default: absent)
   */
  unfit?: string[];
}

/** POST /heartbeat — renews the leases of the attempts the agent runs. */
export interface HeartbeatRequest {
  agentId: string;
  attemptIds: number[];
  /** The agent's GPUs now, for the dashboard's time series. (Default: none sent) */
  gpus?: GpuSample[];
}
export interface HeartbeatResponse {
  /** Attempts that are no longer this agent's (cancelled, or requeued after a lost lease): stop them. */
  stale: number[];
}

/**
 * POST /goodbye — the agent exits cleanly (its reports sent): it is `exited`, not lost, when its
 * channel closes next.
 */
export interface GoodbyeRequest {
  agentId: string;
}

/** POST /attempts/:id/started */
export interface StartedRequest {
  agentId: string;
  pid: number;
}

/** POST /attempts/:id/finish — idempotent: a (task, attempt) is accepted once. */
export interface FinishRequest {
  agentId: string;
  outcome: AttemptOutcome;
  logTail?: string;
  /**
   * A success's artifacts, as uploaded: it is recorded only if each is stored as this attempt's
   * own. (Default: none declared — an agent from before this list, or a phase without artifacts)
   */
  artifacts?: DeclaredArtifact[];
}
export interface FinishResponse {
  /** False when this attempt's report was already recorded (a re-send from the outbox). */
  accepted: boolean;
  taskState: string;
}

/** POST /attempts/:id/log — a chunk of the attempt's log, appended (the coordinator keeps the tail). */
export interface LogChunkRequest {
  agentId: string;
  /** Byte offset of this chunk in the agent's log file, so re-sent chunks are not appended twice. */
  offset: number;
  text: string;
}

/**
 * POST /agents/:agentId/points — live points the agent read from its attempts' events files
 * (agent/pointRelay.ts). Idempotent: the relay sends again what was not acknowledged.
 */
export interface PointsRequest {
  attempts: AttemptPoints[];
}
export interface PointsResponse {
  /** Metric values stored. */
  stored: number;
  /** Values left out: another agent's or an unknown attempt, a bad value, a name past a bound. */
  dropped: number;
}

/** GET /tasks/:id/metrics — every series of the task, each as parallel arrays by step. */
export interface TaskMetricsResponse {
  taskId: number;
  series: Record<string, { steps: number[]; values: number[]; attempts: number[] }>;
}

/** GET /metrics[?phase=P] — the metric names that have a series (of P's tasks), alphabetical, at most 1,000. */
export interface MetricNamesResponse {
  names: string[];
}

/** GET /metrics/:name/series[?phase=P] — one metric for every task that has it, lowest ids first. */
export interface MetricSeriesResponse {
  name: string;
  tasks: Array<{ taskId: number; params: Record<string, unknown>; steps: number[]; values: number[] }>;
  /** More than 500 tasks have it: only the first 500 are here. */
  truncated: boolean;
}

/** GET /channel?agentId=… — server-sent events held open for the agent's lifetime. */
export type ChannelEvent =
  | { type: "hello"; serverTime: number }
  | { type: "cancel"; attemptIds: number[] }
  | { type: "work" }
  /** The sweep has finished: nothing will ever be leased again (agents without --stay exit). */
  | { type: "done" };

/**
 * What a client may branch on, one word each (the status alone is ambiguous: 409 is both):
 * - `unknown_agent`: the coordinator has no registration of this agent (it restarted): register again.
 * - `unknown_attempt`: no such attempt.
 * - `foreign_attempt`: the attempt belongs to another agent (its lease was lost and re-leased).
 * - `not_extendable`: this coordinator serves no sweep that configs can be added to.
 */
export type ErrorCode =
  | "unknown_agent"
  | "unknown_attempt"
  | "foreign_attempt"
  | "not_extendable"
  /** An artifact upload's offset is not what the coordinator holds (or it is still writing): ask again. */
  | "upload_offset"
  /** `serve` was started without `--slurm`: there is no allocation to resume. */
  | "no_allocation";

/**
 * Errors are always `{ error: "one clear sentence" }` with a 4xx/5xx status, and a `code` where a
 * client may act on the error. Clients branch on `code`, never on the text.
 */
export interface ErrorBody {
  error: string;
  /** (Default: absent — nothing to branch on) */
  code?: ErrorCode;
}
