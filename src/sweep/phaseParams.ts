import { didYouMean } from "./closest.js";
import { endSentence } from "./errorWording.js";
import type { FileSettingsInput, PhaseInput } from "./schema.js";
import { formatSpecUse, placeholderNames } from "./template.js";
import type { ParamValue } from "./types.js";
import type { YamlSource } from "./yamlSource.js";

// A phase's parameters: the names they may not take or repeat, the placeholders that must name
// one, and how their values were spelt.

/**
 * Records how numbers and booleans are spelt where that differs from their plain text (0.0,
 * 1e-3, True), so templates render them as written. Undefined when nothing differs.
 */
export function writtenSpellings(
  source: YamlSource,
  phase: string,
  input: PhaseInput,
  settings: FileSettingsInput,
  axes: Array<{ name: string; values: ParamValue[] }>,
  seedsAxis: boolean,
): Record<string, Record<string, string>> | undefined {
  const spellings: Record<string, Record<string, string>> = {};
  let any = false;
  const note = (param: string, value: unknown, path: Array<string | number>): void => {
    if (typeof value !== "number" && typeof value !== "boolean") return;
    const written = source.writtenText(path);
    if (written === undefined || written === String(value)) return;
    spellings[param] ??= {};
    (spellings[param] as Record<string, string>)[JSON.stringify(value)] ??= written;
    any = true;
  };
  for (const [key, value] of Object.entries(settings.defaults ?? {})) note(key, value, ["defaults", key]);
  for (const [key, value] of Object.entries(input.defaults ?? {})) {
    delete spellings[key];
    note(key, value, [phase, "defaults", key]);
  }
  for (const [index, axisEntry] of axes.entries()) {
    delete spellings[axisEntry.name];
    const fromSeeds = seedsAxis && index === 0;
    const combination = fromSeeds ? index : index - (seedsAxis ? 1 : 0);
    for (const [position, value] of axisEntry.values.entries()) {
      const path = fromSeeds
        ? ["seeds", position]
        : [phase, "combinations", combination, axisEntry.name, position];
      note(axisEntry.name, value, path);
    }
  }
  if (!any) return undefined;
  for (const [key, map] of Object.entries(spellings))
    if (Object.keys(map).length === 0) delete spellings[key];
  return Object.keys(spellings).length > 0 ? spellings : undefined;
}

/** `phase` names the phase in output_dir and in the results CSV, so it cannot be a parameter. */
export function rejectReservedNames(
  source: YamlSource,
  phase: string,
  input: PhaseInput,
  settings: FileSettingsInput,
): void {
  const reserved = "phase";
  const message = `"${reserved}" is reserved: it is the phase name (in output_dir and in the results CSV); rename this parameter`;
  if (settings.defaults && reserved in settings.defaults)
    throw source.error(["defaults", reserved], message, "key");
  if (input.defaults && reserved in input.defaults)
    throw source.error([phase, "defaults", reserved], message, "key");
  const index = (input.combinations ?? []).findIndex((entry) => reserved in entry);
  if (index >= 0) throw source.error([phase, "combinations", index, reserved], message, "key");
}

export function rejectRepeatedAxes(source: YamlSource, phase: string, axes: Array<{ name: string }>): void {
  const seen = new Set<string>();
  for (const [index, axisEntry] of axes.entries()) {
    if (seen.has(axisEntry.name)) {
      throw source.error(
        [phase, "combinations", index],
        `parameter "${axisEntry.name}" is listed twice in combinations; merge its values into one list`,
      );
    }
    seen.add(axisEntry.name);
  }
}

export function checkPlaceholders(
  source: YamlSource,
  path: Array<string | number>,
  template: string,
  known: Set<string>,
  what: string,
): void {
  // A template that comes from no key in this file (--command) is placed at the phase's name.
  const at = path.length === 1 && !(path[0] === "command" || path[0] === "output_dir") ? "key" : "value";
  const spec = formatSpecUse(template, known);
  if (spec) {
    throw source.error(
      path,
      `${spec.text}: format specs and conversions are not supported; write {${spec.name}} (the value as written in the config)`,
      at,
    );
  }
  for (const placeholder of placeholderNames(template)) {
    if (known.has(placeholder)) continue;
    const names = [...known].sort().join(", ") || "(none)";
    const why =
      what.startsWith("command") && placeholder === "phase"
        ? " ({phase} works in output_dir only: a task shared by several phases runs once, with one command)"
        : didYouMean(placeholder, known);
    throw source.error(
      path,
      `undefined placeholder {${placeholder}} in ${what}${endSentence(why)}Defined: ${names}; write {{ and }} for literal braces`,
      at,
    );
  }
}
