/**
 * The config checks that keep a command safe to hand to `sh -c` (see shellLexer.ts), placed
 * where the user has to look. Split from loadSweep.ts: the shell is a concern of its own.
 */
import { ConfigError, formatKeyPath } from "./configError.js";
import type { FileSettingsInput, PhaseInput } from "./schema.js";
import { commandTemplateProblem, unclosedQuote } from "./template.js";
import type { YamlSource } from "./yamlSource.js";

/**
 * Refuses a command the shell would read differently from what labsweep quotes for: a quote or
 * substitution left open, or a placeholder where no quoting keeps a value in its place (after a
 * backslash, in a comment or here-document, inside backticks, `$'…'`, `${…}`, `$((…))`).
 */
export function checkShellSafety(
  source: YamlSource,
  phase: string,
  commandPath: Array<string | number>,
  template: string,
): void {
  const fromFile = !(commandPath.length === 1 && commandPath[0] === phase);
  const quote = unclosedQuote(template);
  if (quote) {
    const what = quote.quote === "'" || quote.quote === '"' ? `a ${quote.quote} quote` : `a ${quote.quote}`;
    const fix = quote.quote.length === 1 ? `close it, or write it as \\${quote.quote}` : "close it";
    throw source.error(
      commandPath,
      `the command leaves ${what} open (at character ${quote.offset + 1}); ${fix}`,
      fromFile ? "value" : "key",
    );
  }
  const problem = commandTemplateProblem(template);
  if (!problem) return;
  const keyPath = formatKeyPath(commandPath);
  const detail = `${problem.detail}. Put it in an unquoted word or inside '…' or "…" (see docs/config.md, "Command templates")`;
  if (!fromFile)
    throw source.error(commandPath, `${detail} (at character ${problem.offset + 1} of --command)`, "key");
  const place = source.placeWithin(commandPath, problem.offset, problem.length);
  throw new ConfigError(place, keyPath, detail);
}

/** A NUL cannot be in a process's arguments: a value holding one could never reach its command. */
export function rejectNulValues(
  source: YamlSource,
  phase: string,
  input: PhaseInput,
  settings: FileSettingsInput,
): void {
  const check = (value: unknown, path: Array<string | number>): void => {
    if (typeof value === "string" && value.includes("\0"))
      throw source.error(path, "the value contains a NUL character, which no command argument can hold");
  };
  for (const [key, value] of Object.entries(settings.defaults ?? {})) check(value, ["defaults", key]);
  for (const [position, value] of (settings.seeds ?? []).entries()) check(value, ["seeds", position]);
  for (const [key, value] of Object.entries(input.defaults ?? {})) check(value, [phase, "defaults", key]);
  for (const [index, entry] of (input.combinations ?? []).entries())
    for (const [key, values] of Object.entries(entry))
      for (const [position, value] of (values as unknown[]).entries())
        check(value, [phase, "combinations", index, key, position]);
}
