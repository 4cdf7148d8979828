// Runs every benchmark in sequence; each prints one line of figures and ratios.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";

const only = process.argv[2];
const benches = readdirSync(new URL(".", import.meta.url))
  .filter(
    (name) =>
      /^[a-z].*\.mjs$/.test(name) &&
      !["lib.mjs", "run-all.mjs", "before-after.mjs", "scoreboard.mjs"].includes(name),
  )
  .filter((name) => !only || name.includes(only))
  .sort();
let failed = 0;
for (const name of benches) {
  const run = spawnSync(process.execPath, ["--expose-gc", new URL(name, import.meta.url).pathname], {
    stdio: "inherit",
  });
  if (run.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
