// `node --import ./loadedModules.mjs …`: records every module the program loads in
// $LABSWEEP_TEST_LOADED_MODULES (see loadedModulesHooks.mjs), and at exit the CommonJS modules
// loaded by require (which the hooks do not see: better-sqlite3, pg).
import { appendFileSync } from "node:fs";
import { createRequire, register } from "node:module";
import { pathToFileURL } from "node:url";

const file = process.env.LABSWEEP_TEST_LOADED_MODULES;
register("./loadedModulesHooks.mjs", import.meta.url, { data: { file } });
const required = createRequire(import.meta.url).cache;
process.on("exit", () => {
  const urls = Object.keys(required).map((path) => pathToFileURL(path).href);
  if (urls.length > 0) appendFileSync(file, `${urls.join("\n")}\n`);
});
