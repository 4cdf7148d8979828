import { readStoredTokens } from "../coordinator/tokens.js";
import { EXIT, UsageError } from "./exitCodes.js";
import { stateDirFrom } from "./stateDir.js";

/** Prints the agent token (or the viewer token) from the state dir, for scripts. */
export async function tokenCommand(
  configs: string[],
  flags: { state?: string; viewer?: boolean },
): Promise<number> {
  const stateDir = stateDirFrom(flags, configs);
  const tokens = readStoredTokens(stateDir);
  if (!tokens)
    throw new UsageError(
      `no tokens in ${stateDir}: start \`labsweep serve\` there first (or pass --state DIR)`,
    );
  process.stdout.write(`${flags.viewer ? tokens.viewer : tokens.agent}\n`);
  return EXIT.ok;
}
