import { spawn } from "node:child_process";
import { startDashboardServer } from "../app/dashboard.js";
import { isLoopback } from "../http/tokens.js";
import { openLedgerReadOnly } from "../ledger/openLedger.js";
import { shellQuote } from "../slurm/shellQuote.js";
import { EXIT, UsageError } from "./exitCodes.js";
import { portNumber } from "./flags.js";
import { stateDirFrom } from "./stateDir.js";

export interface DashboardFlags {
  state?: string;
  /** The ledger's store (Default: $LABSWEEP_STORE, else the state dir's SQLite file). */
  store?: string;
  /** (Default: 127.0.0.1) */
  host: string;
  /** 0: any free port. (Default: 0) */
  port: string;
  /** Open the page in the default browser. (Default: false) */
  open?: boolean;
}

/**
 * `labsweep dashboard`: the dashboard of a sweep that is not running (or is, elsewhere), served
 * read-only until Ctrl-C. Its URL is the one line on stdout.
 */
export async function dashboardCommand(configs: string[], flags: DashboardFlags): Promise<number> {
  const port = portNumber(flags.port);
  const stateDir = stateDirFrom(flags, configs);
  const db = openLedgerReadOnly(stateDir, { store: flags.store });
  if (!db)
    throw new UsageError(
      `no ledger in ${stateDir}: start one with \`labsweep run CONFIG…\` (or pass --state DIR)`,
    );
  const note = (text: string) => process.stderr.write(`labsweep: ${text}\n`);
  let server: Awaited<ReturnType<typeof startDashboardServer>> | null = null;
  try {
    server = await startDashboardServer(db, { stateDir, host: flags.host, port });
    const remote = !(isLoopback(flags.host) || flags.host.toLowerCase() === "localhost");
    // The token is never printed: from another machine, the viewer fetches it with `labsweep token`.
    note(
      `dashboard (read-only) at ${server.url}/ — Ctrl-C to stop${remote ? `; from other machines add ?token= and the output of \`labsweep token --viewer --state ${shellQuote(stateDir)}\`` : ""}`,
    );
    process.stdout.write(`${server.url}/\n`);
    if (flags.open) openInBrowser(`${server.url}/`, note);
    return await new Promise<number>((resolve) => {
      const stop = (): void => resolve(EXIT.ok);
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
  } finally {
    await server?.close();
    await db.close();
  }
}

/**
 * Opens `url` with the platform's opener (open on macOS, start on Windows, xdg-open elsewhere).
 * A machine without one (a server over SSH) gets a note, not an error: the URL is printed anyway.
 */
export function openInBrowser(url: string, note: (text: string) => void): void {
  const [command, args] =
    process.platform === "darwin"
      ? ["open", [url]]
      : process.platform === "win32"
        ? ["cmd", ["/c", "start", '""', url]]
        : ["xdg-open", [url]];
  if (process.platform === "linux" && !process.env.DISPLAY && !process.env.WAYLAND_DISPLAY) {
    note(`no display to open a browser on: open ${url} yourself`);
    return;
  }
  const child = spawn(command, args, { stdio: "ignore", detached: true });
  child.once("error", () => note(`no browser opener (${command}) here: open ${url} yourself`));
  child.once("exit", (code) => {
    if (code !== 0) note(`${command} could not open a browser (exit ${code}): open ${url} yourself`);
  });
  child.unref();
}
