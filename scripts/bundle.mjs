// Bundles the CLI (dist/cli/main.js, as tsc wrote it) into dist/bundle/: one file per command
// plus shared chunks, split where main.ts imports a command lazily. Why: a command that loads
// its ~500 modules one by one (zod alone is 95 files, yaml 73) spends more time resolving,
// reading and linking them than running; bundled, `status` and a one-task `run` start about a
// third sooner (bench/startup.mjs). The library surface (dist/index.js) stays unbundled.
//
// dist/bundle/ sits two levels below the root, as every dist/<floor>/ does, so the modules'
// `new URL("../../…", import.meta.url)` paths (launcher.py, migrations/, the web assets,
// package.json) mean the same from a chunk. The SQL drivers stay outside: better-sqlite3 is
// native, and both are loaded by require on first use (ledger/sqliteDriver.ts, postgresDb.ts).
// dist/bundle/meta.json maps each chunk to the modules in it (test/cli.lazyLoad.test.ts).
import { rmSync, writeFileSync } from "node:fs";
import { build } from "esbuild";

const root = new URL("..", import.meta.url);
const outdir = new URL("dist/bundle/", root).pathname;
rmSync(outdir, { recursive: true, force: true });
const result = await build({
  entryPoints: [new URL("dist/cli/main.js", root).pathname],
  outdir,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  external: ["better-sqlite3", "pg", "pg-native"],
  // Bundled CommonJS libraries (fastify's) call require for Node's built-ins; an ES module has
  // none of its own.
  banner: {
    js: 'import { createRequire as __labsweepRequire } from "node:module";\nconst require = __labsweepRequire(import.meta.url);',
  },
  metafile: true,
  logLevel: "warning",
});
writeFileSync(new URL("meta.json", `file://${outdir}`), JSON.stringify(result.metafile));
