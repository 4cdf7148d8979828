import { resolve } from "node:path";
import { defaultStateDir } from "../coordinator/openSweep.js";

/** --state, else `.labsweep/` beside the first config, else `./.labsweep`. */
export function stateDirFrom(options: { state?: string }, configs: readonly string[]): string {
  if (options.state) return resolve(options.state);
  if (configs.length > 0) return defaultStateDir(configs);
  return resolve(".labsweep");
}
