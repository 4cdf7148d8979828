import { EXIT } from "../app/exitCodes.js";
import { describe } from "../log/logger.js";
import { ConfigError } from "../sweep/configError.js";

// The verdicts live with the composition roots that reach them (app/); commands print them.
export { EXIT };

/** Bad command-line input: exit 2, like a bad config. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** Prints one clear line for an error and returns the exit code it maps to. */
export function reportError(
  error: unknown,
  write: (text: string) => void = (text) => process.stderr.write(text),
): number {
  if (error instanceof ConfigError || error instanceof UsageError) {
    write(`labsweep: ${error.message}\n`);
    return EXIT.badInput;
  }
  write(`labsweep: ${describe(error)}\n`);
  if (process.env.LABSWEEP_DEBUG && error instanceof Error) write(`${error.stack}\n`);
  return EXIT.failed;
}
