import { readStoredTokens, TokenError } from "../http/tokens.js";
import { EXIT, UsageError } from "./exitCodes.js";
import { stateDirFrom } from "./stateDir.js";

/**
 * Prints the agent token (or --viewer, --admin) from the state dir, for scripts: put it in an
 * environment variable or a 0600 file, never in another command's arguments.
 */
export async function tokenCommand(
  configs: string[],
  flags: { state?: string; viewer?: boolean; admin?: boolean },
): Promise<number> {
  if (flags.viewer && flags.admin) throw new UsageError("--viewer and --admin: pick one");
  const stateDir = stateDirFrom(flags, configs);
  let tokens: ReturnType<typeof readStoredTokens>;
  try {
    tokens = readStoredTokens(stateDir);
  } catch (error) {
    if (error instanceof TokenError) throw new UsageError(error.message);
    throw error;
  }
  const kind = flags.viewer ? "viewer" : flags.admin ? "admin" : "agent";
  const token = tokens?.[kind];
  if (!token)
    throw new UsageError(
      `no ${kind} token in ${stateDir}: start \`labsweep serve\` there first (or pass --state DIR)`,
    );
  process.stdout.write(`${token}\n`);
  if (process.stdout.isTTY)
    process.stderr.write(
      `labsweep: pass it in the environment (${kind === "agent" ? "LABSWEEP_TOKEN" : `LABSWEEP_${kind.toUpperCase()}_TOKEN`}) or a 0600 file (--token-file), not as --token: other users see command lines in \`ps\`\n`,
    );
  return EXIT.ok;
}
