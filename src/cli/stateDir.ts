import { dirname, join, resolve } from "node:path";

/**
 * --state, else `.labsweep/` beside the first config, else `./.labsweep`. Path rules only: a
 * command that reads just the ledger (`status`, `results`) must not load the config parser.
 */
export function stateDirFrom(options: { state?: string }, configs: readonly string[]): string {
  if (options.state) return resolve(options.state);
  if (configs.length > 0) return join(dirname(resolve(configs[0] as string)), ".labsweep");
  return resolve(".labsweep");
}
