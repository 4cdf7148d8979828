export { canonicalText, canonicalValue, taskSignature } from "./canonical.js";
export { ConfigError } from "./configError.js";
export { expandPhase, gridSize, outputDirsOf } from "./expand.js";
export { type LoadOptions, loadSweep, parseSweepFile, type Sweep } from "./loadSweep.js";
export type * from "./types.js";
