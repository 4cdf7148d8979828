import { ConfigError } from "../../src/sweep/configError.js";
import { parseSweepFile } from "../../src/sweep/loadSweep.js";

/** The ConfigError parsing `text` as the config file `file` throws; fails the test if it is accepted. */
export function configErrorOf(file: string, text: string): ConfigError {
  try {
    parseSweepFile(file, text);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error("expected a ConfigError, but the config was accepted");
}
