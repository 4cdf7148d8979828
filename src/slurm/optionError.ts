import { sbatchLineProblem } from "./shellQuote.js";

/** A `labsweep slurm` option with a value it cannot use; the CLI maps it to exit code 2. */
export class SlurmOptionError extends Error {
  override readonly name = "SlurmOptionError";
}

/** `value`, or a SlurmOptionError naming the flag when an `#SBATCH` line cannot hold it. */
export function checkLine(flag: string, value: string, shown: string = value): string {
  const problem = sbatchLineProblem(value);
  if (problem) throw new SlurmOptionError(`${flag} ${show(shown)} cannot be used: ${problem}`);
  return value;
}

/** A value as it appears in an error: JSON quotes make spaces, line breaks and quotes visible. */
export function show(text: string): string {
  return JSON.stringify(text);
}
