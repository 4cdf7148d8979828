/**
 * Quoting for the two languages an sbatch script is written in: bash (the body) and sbatch's own
 * `#SBATCH` option lines, which sbatch parses itself before bash ever runs.
 */

/**
 * One bash word that stands for exactly `value`: single quotes, each `'` written as `'\''`.
 * Nothing inside single quotes is special to bash — `$(…)`, backticks, `"`, `\`, newlines and
 * unicode included — so this is safe for any string without a NUL (which no argument or path has).
 */
export function shellQuote(value: string): string {
  if (value.includes("\0")) throw new Error("a shell word cannot hold a NUL character");
  return `'${value.replaceAll("'", "'\\''")}'`;
}

/**
 * Why `value` cannot be an argument on an `#SBATCH` line, or null when it can. sbatch reads such a
 * line up to its newline, so a line break cannot be quoted; and it treats any `#SBATCH` line that
 * contains "hetjob" or "packjob" (any case) as the start of another heterogeneous job component.
 */
export function sbatchLineProblem(value: string): string | null {
  if (/[\n\r]/.test(value)) return "a line break cannot be written on an #SBATCH line";
  if (value.includes("\0")) return "it holds a NUL character";
  if (/hetjob|packjob/i.test(value))
    return 'sbatch reads any #SBATCH line containing "hetjob" or "packjob" as a new heterogeneous job component';
  return null;
}

/**
 * One argument of an `#SBATCH` line standing for exactly `value`: sbatch groups characters in
 * double quotes (spaces, `'`, `#` and `$` are plain inside them) and a backslash makes the next
 * character literal, so `"` and `\` are backslash-escaped. The caller checks `sbatchLineProblem`.
 */
export function sbatchQuote(value: string): string {
  const problem = sbatchLineProblem(value);
  if (problem) throw new Error(`cannot quote ${JSON.stringify(value)} for an #SBATCH line: ${problem}`);
  return `"${value.replace(/["\\]/g, "\\$&")}"`;
}
