// `node --import ./loadedModules.mjs …`: records every module the program loads in
// $LABSWEEP_TEST_LOADED_MODULES (see loadedModulesHooks.mjs).
import { register } from "node:module";

register("./loadedModulesHooks.mjs", import.meta.url, {
  data: { file: process.env.LABSWEEP_TEST_LOADED_MODULES },
});
