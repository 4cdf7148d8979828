export { agentBinary } from "./agentBinary.js";
export {
  DEFAULT_JOB_NAME,
  DEFAULT_OUTPUT_DIR,
  type Gres,
  parseSlurmOptions,
  type SlurmFlagValues,
  type SlurmJobSpec,
  SlurmOptionError,
} from "./options.js";
export { parseSbatchArg } from "./sbatchArgs.js";
export {
  LOG_PATTERN,
  overriddenVariables,
  type SbatchOption,
  sbatchOptions,
  TIME_LIMIT_SIGNAL,
} from "./sbatchOptions.js";
export { type AgentBinary, SCRIPT_NAME, sbatchScript } from "./sbatchScript.js";
export { sbatchLineProblem, sbatchQuote, shellQuote } from "./shellQuote.js";
export { findOnPath, type Submitted, submitSbatch, writeFileAtomically } from "./submit.js";
