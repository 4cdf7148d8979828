import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { LocalMachine } from "../../dashboard/machines.js";
import type { Tokens } from "../../http/tokens.js";
import type { ExplainSources } from "../../ledger/reads/explain.js";
import type { AllocationReport } from "../../slurm/allocator.js";
import type { GpuTelemetry } from "../../telemetry/gpuTelemetry.js";
import type { Coordinator } from "../coordinator.js";
import type { RemoteAgents } from "../remoteAgents.js";

/** What the coordinator's HTTP app serves, and how. Its route modules read it; none imports app.ts. */
export interface AppOptions {
  coordinator: Coordinator;
  /** The networked agents the agents' routes serve; required with `agentApi`. (Default: none) */
  agents?: RemoteAgents;
  tokens: Tokens;
  stateDir: string;
  /** Largest request body accepted; larger ones get 413. (Default: 1 MiB) */
  bodyLimit?: number;
  /**
   * Check every route's JSON schema against the meta-schema as it compiles (tests do). A server
   * skips it: it cost a quarter of `run`'s start-up, for schemas that are ours and fixed.
   * (Default: false)
   */
  checkSchemas?: boolean;
  /** Serve HTTPS with this key and certificate (PEM). (Default: plain HTTP) */
  https?: { key: Buffer; cert: Buffer };
  /**
   * Serve on this HTTP server, already listening, instead of one of the app's own: `route` is
   * given the app's request handler (`run`'s dashboard, loaded by its first request). (Default: none)
   */
  listening?: Listening;
  /** Adds config files to the running sweep (`labsweep add`). (Default: not offered) */
  addConfigs?: (files: Array<{ path: string; text: string }>, options?: AddOptions) => Promise<unknown>;
  /** Server-side errors (never sent to clients in detail). (Default: stderr) */
  warn?: (message: string) => void;
  /** Recent GPU readings per agent, which the dashboard plots. */
  telemetry: GpuTelemetry;
  /** Serve the dashboard at `/` and its API under /api/v1/dashboard. (Default: true) */
  dashboard?: boolean;
  /** Machines working in this process (`labsweep run`'s), shown beside registered agents. (Default: none) */
  localMachines?: () => LocalMachine[];
  /**
   * What `labsweep explain` judges a task by besides the ledger: what the agents working for this
   * coordinator offer now. (Default: the connected agents as they registered, from the ledger —
   * for a read-only view such as `labsweep dashboard`, which leases nothing)
   */
  explainSources?: () => ExplainSources;
  /** Offer the agents' routes (lease, report) and the admin's (cancel, add, retry). (Default: true) */
  agentApi?: boolean;
  /**
   * Reads need no token from a loopback peer whose Host header is a loopback literal or
   * `localhost` (`labsweep run`; `serve --trust-loopback`). (Default: false, a token always)
   */
  trustLoopback?: boolean;
  /** Dashboard event streams open at once; the next one gets 503. (Default: 64) */
  maxEventStreams?: number;
  /** The largest artifact file an agent may upload, in bytes (`serve --artifact-limit`). (Default: 1024 MiB) */
  artifactLimitBytes?: number;
  /** `serve --slurm`'s allocator: its report in `/agents` and `/status`, resumed by the admin. (Default: none) */
  allocation?: { report(): AllocationReport; resume(): void };
  /** Bytes an event stream may have waiting for a client that does not read; past it, dropped. (Default: 1 MiB) */
  streamBufferLimit?: number;
}

/** What the agents' routes need: the options with the agents they serve. */
export type AgentAppOptions = AppOptions & { agents: RemoteAgents };

/** What `labsweep add` asks for besides its files. */
export interface AddOptions {
  /** Accept a sweep over the large-grid limit (`labsweep add --yes`). (Default: false) */
  yes?: boolean;
}

/** An HTTP server already listening, and how to hand it the app's request handler. */
export interface Listening {
  server: Server;
  route(handler: (request: IncomingMessage, response: ServerResponse) => void): void;
}
