import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { AgentBinary } from "./sbatchScript.js";

/**
 * This installation's agent command for compute nodes: the absolute path of the Node.js running
 * now (`process.execPath`) and of labsweep's `bin/labsweep.js` with symlinks resolved (so an
 * `npm link` or `node_modules/.bin` shim becomes the real file). Compute nodes must see both at
 * the same paths — the usual shared home or software filesystem of a cluster; the script checks.
 */
export function agentBinary(): AgentBinary {
  // This file is src/slurm/agentBinary.ts or dist/slurm/agentBinary.js: bin/ is two levels up.
  const cli = realpathSync(fileURLToPath(new URL("../../bin/labsweep.js", import.meta.url)));
  return { node: process.execPath, cli };
}
