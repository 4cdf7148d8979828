import { delimiter } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The Python client shipped with labsweep (`python/labsweep/`, in the npm package's files):
 * every task can `import labsweep` with nothing installed. Found from this module, two levels
 * below the package root both as `src/agent/` (tests) and `dist/agent/` (an install).
 */
export const PYTHON_CLIENT_DIR = fileURLToPath(new URL("../../python", import.meta.url));

/**
 * `PYTHONPATH` with the client's dir first, so a task's `import labsweep` finds this
 * installation's client whatever else is on the path. An empty entry would put the working
 * directory on the path, so an empty or unset value becomes the client's dir alone.
 */
export function withPythonClient(pythonPath: string | undefined): string {
  return pythonPath ? `${PYTHON_CLIENT_DIR}${delimiter}${pythonPath}` : PYTHON_CLIENT_DIR;
}
