import { prepareLedger } from "../app/localRun.js";
import { startServer } from "../app/serve.js";
import { openSweep } from "../coordinator/openSweep.js";
import { isTokenShaped, readTokensFile, TOKEN_KINDS, TokenError, type Tokens } from "../http/tokens.js";
import { ledgerStore } from "../ledger/openLedger.js";
import { postgresWakeBus } from "../ledger/wakeBus.js";
import { warnOnStderr } from "../log/logger.js";
import { shellQuote } from "../slurm/shellQuote.js";
import { EXIT, UsageError } from "./exitCodes.js";
import { portNumber } from "./flags.js";
import { reportOwedRows } from "./owedRows.js";
import { type SlurmServeFlags, slurmAllocationFrom } from "./slurmServe.js";
import { stateDirFrom } from "./stateDir.js";

export interface ServeFlags {
  state?: string;
  command?: string;
  /** `--set [PHASE.]PARAM=VALUES` flags, in order (repeatable). */
  set?: string[];
  yes?: boolean;
  host: string;
  port: string;
  agentToken?: string;
  viewerToken?: string;
  adminToken?: string;
  tokensFile?: string;
  trustLoopback?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  exitWhenDone?: boolean;
  leaseSeconds?: string;
  artifactLimit?: string;
}

/** `serve`'s flags with `--slurm` and the job's shape (`labsweep slurm`'s options). */
export type ServeCommandFlags = ServeFlags & SlurmServeFlags;

/** `labsweep serve`: the coordinator for remote agents. Runs until Ctrl-C, or until done with --exit-when-done. */
export async function serveCommand(configs: string[], flags: ServeCommandFlags): Promise<number> {
  const port = portNumber(flags.port);
  if (Boolean(flags.tlsCert) !== Boolean(flags.tlsKey))
    throw new UsageError("--tls-cert and --tls-key go together");
  const leaseMs = flags.leaseSeconds === undefined ? undefined : Number(flags.leaseSeconds) * 1000;
  if (leaseMs !== undefined && !(leaseMs > 0))
    throw new UsageError(`--lease-seconds must be positive, got "${flags.leaseSeconds}"`);
  const artifactLimitMb = Number(flags.artifactLimit ?? "1024");
  if (!(artifactLimitMb > 0))
    throw new UsageError(`--artifact-limit must be a positive number of MiB, got "${flags.artifactLimit}"`);
  const tokens = serveTokens(flags);
  const slurm = flags.slurm ? slurmAllocationFrom(flags) : undefined;
  const sweep = openSweep(configs, { defaultCommand: flags.command, overrides: flags.set, yes: flags.yes });
  const stateDir = stateDirFrom(flags, configs);
  // Remote agents keep running through a coordinator restart: their attempts get a lease's
  // time to reconnect and report instead of being requeued at once.
  const prepared = await prepareLedger(stateDir, sweep, Date.now(), { remoteGraceMs: leaseMs ?? 12_000 });
  let server: Awaited<ReturnType<typeof startServer>> | null = null;
  // Replicas on one PostgreSQL ledger wake each other's waiting agents (LISTEN/NOTIFY).
  const store = ledgerStore(stateDir);
  const wakeBus = store.kind === "postgres" ? postgresWakeBus(store.url, warnOnStderr) : undefined;
  try {
    server = await startServer(prepared.db, {
      stateDir,
      host: flags.host,
      port,
      leaseMs,
      tokens,
      trustLoopback: flags.trustLoopback ?? false,
      tls: flags.tlsCert && flags.tlsKey ? { certPath: flags.tlsCert, keyPath: flags.tlsKey } : undefined,
      sweep: {
        // A quick grid's "file" is a stand-in for its flags, not a file to read.
        files: configs.length === 0 ? [] : sweep.files,
        load: { defaultCommand: flags.command, yes: flags.yes },
        notify: sweep.notify,
      },
      wakeBus,
      artifactLimitBytes: Math.floor(artifactLimitMb * 1024 * 1024),
      slurm,
    });
    const { sync } = prepared;
    process.stderr.write(
      `labsweep: ${sync.unique} unique tasks (${sync.merged} merged); serving ${server.url}\n` +
        // The token goes in the agent's environment, never its argv (which `ps` shows everyone).
        `labsweep: start agents with: LABSWEEP_TOKEN="$(labsweep token --state ${shellQuote(stateDir)})" labsweep agent --server ${server.url}\n` +
        `labsweep: dashboard at ${server.url}/\n`,
    );
    process.stdout.write(`${server.url}\n`);
    for (const failed of prepared.results.failed)
      process.stderr.write(`labsweep: cannot write results to ${failed.outputDir}: ${failed.error}\n`);
    // Tried again while serving (every few seconds, and after each success), so a fix is seen.
    if (prepared.results.failed.length > 0) void server.coordinator.flushResults();
    const stopped = new Promise<number>((resolve) => {
      const stop = (): void => resolve(EXIT.interrupted);
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
    // Done with rows still owed (a result dir that cannot be written) is not a success.
    const done = flags.exitWhenDone
      ? server.finished().then(async () => {
          process.stderr.write("labsweep: every task has finished\n");
          const owed = await reportOwedRows(prepared.db, (text) => process.stderr.write(text));
          return owed > 0 ? EXIT.failed : EXIT.ok;
        })
      : new Promise<number>(() => {});
    return await Promise.race([stopped, done]);
  } finally {
    if (server) await server.close();
    else await wakeBus?.close();
    await prepared.db.close();
    prepared.release();
  }
}

/**
 * The tokens given to `serve`, kind by kind: the flag (--agent-token, --viewer-token,
 * --admin-token), else `--tokens-file`, else LABSWEEP_AGENT_TOKEN / LABSWEEP_VIEWER_TOKEN /
 * LABSWEEP_ADMIN_TOKEN; a kind given nowhere comes from `<state>/tokens.json` (or is generated).
 */
export function serveTokens(flags: ServeFlags): Partial<Tokens> {
  let file: Partial<Tokens> = {};
  if (flags.tokensFile) {
    try {
      file = readTokensFile(flags.tokensFile);
    } catch (error) {
      if (error instanceof TokenError) throw new UsageError(error.message);
      throw error;
    }
  }
  const fromFlags = { agent: flags.agentToken, viewer: flags.viewerToken, admin: flags.adminToken };
  const tokens: Partial<Tokens> = {};
  for (const kind of TOKEN_KINDS) {
    // `||`: an empty LABSWEEP_AGENT_TOKEN= means "not set", not an empty token nobody can present.
    const token =
      fromFlags[kind] || file[kind] || process.env[`LABSWEEP_${kind.toUpperCase()}_TOKEN`] || undefined;
    if (token === undefined) continue;
    if (!isTokenShaped(token))
      throw new UsageError(
        `the ${kind} token must be printable ASCII without spaces (it travels in a header)`,
      );
    tokens[kind] = token;
  }
  const given = Object.values(tokens);
  if (new Set(given).size !== given.length)
    throw new UsageError("the agent, viewer and admin tokens must all differ");
  return tokens;
}
