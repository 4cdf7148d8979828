// The names parts imported before the scoped logger (log/logger.ts): one implementation, kept
// under these names so those imports keep working.
export { describe as describeError, type Warn, warnOnStderr } from "./logger.js";
