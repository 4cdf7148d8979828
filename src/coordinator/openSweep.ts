import { accessSync, constants, readFileSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { loadCommandGrid } from "../sweep/commandGrid.js";
import { ConfigError } from "../sweep/configError.js";
import { gridSize, outputDirsOf } from "../sweep/expand.js";
import { type LoadOptions, loadSweep, type Sweep } from "../sweep/loadSweep.js";

/** Grids above this many tasks need --yes: a typo in a list can make a grid astronomically large. */
export const LARGE_GRID = 10_000_000;

export interface OpenSweepOptions extends LoadOptions {
  /** Accept grids above LARGE_GRID. (Default: false) */
  yes?: boolean;
}

/**
 * Reads and validates the config files and everything about them that can be checked before
 * the ledger is touched: grid size and writable output dirs. Throws ConfigError (exit 2).
 */
export function openSweep(configPaths: readonly string[], options: OpenSweepOptions = {}): Sweep {
  if (configPaths.length === 0) {
    if (options.defaultCommand === undefined)
      throw new ConfigError(
        null,
        "",
        "no config file given: name one (labsweep run sweep.yaml), or give a quick grid with --command 'python train.py --lr {lr}' --set lr=0.1,0.01",
      );
    // A quick grid runs where the command is typed: its tasks' cwd, ./results, ./.labsweep.
    return checkLoaded(
      loadCommandGrid(options.defaultCommand, options.overrides ?? [], resolve(".")),
      options,
    );
  }
  const inputs = configPaths.map((path) => ({ file: resolve(path), text: readConfigText(path) }));
  return checkSweep(inputs, options);
}

/**
 * The one check every way into the ledger goes through (`run`, `serve`, `plan`, and the
 * coordinator's side of `labsweep add`): schema, grid size over LARGE_GRID without `yes`, and
 * output dirs this machine can create and write. Throws ConfigError naming the place.
 */
export function checkSweep(
  inputs: ReadonlyArray<{ file: string; text: string }>,
  options: OpenSweepOptions = {},
): Sweep {
  return checkLoaded(loadSweep(inputs, options), options);
}

/** checkSweep's checks of a loaded sweep: its size and its output dirs. */
function checkLoaded(sweep: Sweep, options: OpenSweepOptions): Sweep {
  const total = sweep.phases.reduce((sum, phase) => sum + gridSize(phase), 0);
  if (total > LARGE_GRID && !options.yes) {
    const largest = [...sweep.phases].sort((a, b) => gridSize(b) - gridSize(a))[0];
    throw new ConfigError(
      largest ? { file: largest.file, line: largest.line, column: 1 } : null,
      largest?.name ?? "",
      `the sweep has ${total.toLocaleString("en-US")} tasks (more than ${LARGE_GRID.toLocaleString("en-US")}); check the combinations, or pass --yes to accept`,
    );
  }
  for (const phase of sweep.phases) {
    for (const dir of outputDirsOf(phase)) {
      const problem = unwritable(dir);
      if (problem) {
        throw new ConfigError(
          { file: phase.file, line: phase.line, column: 1 },
          `${phase.name}.output_dir`,
          `output dir ${dir} cannot be written: ${problem}`,
        );
      }
    }
  }
  return sweep;
}

function readConfigText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === "ENOENT" ? "no such file" : code === "EISDIR" ? "is a directory" : String(code);
    throw new ConfigError(
      { file: resolve(path), line: 1, column: 1 },
      "",
      `cannot read the config: ${reason}`,
      {
        cause: error,
      },
    );
  }
}

/** Why a dir cannot be created or written, judged at its nearest existing ancestor; null if it can. */
function unwritable(dir: string): string | null {
  let current = dir;
  for (;;) {
    try {
      if (!statSync(current).isDirectory()) return `${current} is not a directory`;
      accessSync(current, constants.W_OK | constants.X_OK);
      return null;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EACCES" || code === "EPERM" || code === "EROFS")
        return `no permission to write in ${current}`;
      if (code !== "ENOENT" && code !== "ENOTDIR") throw error;
      const parent = dirname(current);
      if (parent === current) return "no existing parent directory";
      current = parent;
    }
  }
}
