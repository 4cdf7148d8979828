import { Coordinator } from "../coordinator/coordinator.js";
import { buildApp } from "../coordinator/http/app.js";
import { stateLockHeld } from "../coordinator/stateLock.js";
import { serverUrl } from "../http/serverUrl.js";
import { clearTextWarning, loadOrCreateTokens } from "../http/tokens.js";
import type { Db } from "../ledger/db.js";
import { warnOnStderr } from "../log/logger.js";
import { GpuTelemetry } from "../telemetry/gpuTelemetry.js";

export interface DashboardServerOptions {
  /** The state dir: its tokens, and the task logs the dashboard shows. */
  stateDir: string;
  /** (Default: 127.0.0.1) */
  host?: string;
  /** 0 picks a free port. (Default: 0) */
  port?: number;
  warn?: (message: string) => void;
}

export interface DashboardServer {
  url: string;
  close(): Promise<void>;
}

/**
 * The dashboard of a ledger, read-only (`labsweep dashboard`): the page, its reads and the
 * read API, with no agents' or admin's routes. It takes no lock and starts nothing that writes
 * — no lease sweeper, no results writer, no gate judge — so it may look at a sweep while
 * `labsweep run` or `serve` works on it, or after they have gone.
 */
export async function startDashboardServer(
  db: Db,
  options: DashboardServerOptions,
): Promise<DashboardServer> {
  const warn = options.warn ?? warnOnStderr;
  // Only reads are served; the coordinator object is how the read routes reach the ledger, and
  // constructing one starts nothing.
  const coordinator = new Coordinator(db, { stateDir: options.stateDir, warn });
  const app = buildApp({
    coordinator,
    // The same tokens as `run` and `serve` (a viewer from another machine presents the viewer token).
    tokens: loadOrCreateTokens(options.stateDir),
    stateDir: options.stateDir,
    warn,
    telemetry: new GpuTelemetry(),
    agentApi: false,
    // Leasing nothing, it knows no live offers: the ledger's registered agents are judged, and
    // whether a run or serve holds the state dir (unknowable for a PostgreSQL ledger's replicas).
    explainSources: () => ({
      coordinator: db.dialect === "sqlite" ? stateLockHeld(options.stateDir) : null,
    }),
    // One user's look at their own sweep, as under `labsweep run`: no token from this machine.
    trustLoopback: true,
  });
  const host = options.host ?? "127.0.0.1";
  const warning = clearTextWarning(host, false);
  if (warning) warn(warning);
  await app.listen({ host, port: options.port ?? 0 });
  return {
    url: serverUrl(app.server, host, false),
    close: () => app.close(),
  };
}
