/**
 * A quick grid: `labsweep run --command 'python train.py --lr {lr}' --set lr=0.1,0.01` with no
 * config file. It is built as a one-phase config would be (the same checks, signatures and
 * result rows), so a task it runs is the same task as in a YAML file with that command and those
 * values.
 */
import { join } from "node:path";
import { rejectUnapplied, resolveOverrides } from "./applyOverrides.js";
import { closest } from "./closest.js";
import { ConfigError } from "./configError.js";
import { buildPhase, type Sweep } from "./loadSweep.js";
import { parseOverride } from "./overrides.js";
import { formatSpecUse, placeholderNames } from "./template.js";
import type { YamlSource } from "./yamlSource.js";

/** The phase a quick grid is: its name in `status`, the results CSV and `--set grid.p=…`. */
export const GRID_PHASE = "grid";

/** Where a quick grid's final_results.csv goes, relative to the dir it runs in. */
export const GRID_OUTPUT_DIR = "results";

/**
 * The sweep of `--command TEMPLATE --set …` run in `dir`: one phase, every placeholder given by a
 * --set, tasks started in `dir`, results in `dir/results/`. Throws ConfigError naming the flag.
 */
export function loadCommandGrid(command: string, overrides: readonly string[], dir: string): Sweep {
  const resolved = resolveOverrides(overrides.map(parseOverride), [GRID_PHASE]);
  const given = new Set(resolved.map((entry) => entry.param));
  // `{lr:.3f}` is no placeholder of lr, so without this --set lr would be "unused".
  const spec = formatSpecUse(command, given);
  if (spec)
    throw new ConfigError(
      null,
      "--command",
      `${spec.text}: format specs and conversions are not supported; write {${spec.name}} (the value as given)`,
    );
  for (const name of placeholderNames(command)) {
    // {phase} is no parameter: buildPhase explains that one.
    if (given.has(name) || name === "phase") continue;
    const typo = closest(name, given);
    const hint = typo ? ` (is --set ${typo}=… meant for {${name}}?)` : "";
    throw new ConfigError(
      null,
      "",
      `--command uses {${name}}, but no --set gives it values${hint}: add --set ${name}=VALUES (e.g. --set ${name}=1,2 or --set '${name}=range(3)')`,
    );
  }
  const source = flagSource(join(dir, "--command"));
  const context = { resolved, known: new Set<string>() };
  const phase = buildPhase(
    source,
    GRID_PHASE,
    { output_dir: GRID_OUTPUT_DIR },
    {},
    { defaultCommand: command },
    context,
  );
  rejectUnapplied(resolved, [GRID_PHASE], context.known, { commandOnly: true });
  return { files: [source.file], phases: [phase], notify: [] };
}

/**
 * The "source" of a grid given by flags: nothing to point at in a file, so its errors name
 * --command instead of a line. `file` stands in the ledger where a config's path would.
 */
function flagSource(file: string): YamlSource {
  const place = { file, line: 1, column: 1 };
  return {
    file,
    data: {},
    placeOf: () => place,
    error: (_path, detail) => new ConfigError(null, "--command", detail),
    placeWithin: () => place,
    writtenText: () => undefined,
  };
}
