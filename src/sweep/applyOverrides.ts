/**
 * Where `--set` overrides go, and what they do to a phase's axes. They apply to the validated
 * phase before its grid is built, so expansion, signatures, templates and result rows cannot tell
 * a value given by --set from the same value written in the YAML.
 *
 * - `--set PHASE.p=…` reaches that phase only; `--set p=…` every phase that has `p` (in
 *   `defaults`, file `defaults`, `combinations` or the legacy `seeds`) or uses `{p}` in its
 *   command or output_dir. `seed` reaches every phase: it is the replicate axis, and a task sees
 *   it in $LABSWEEP_PARAMS even where its command does not name it.
 * - Any other name no phase has or uses is a typo, not a new parameter: an error (a silent new
 *   parameter would give every task a new signature and rerun the whole sweep).
 * - In a phase, the values replace the axis of that name where `combinations` lists one (same
 *   place, so the order of tasks is kept); else they become a new last axis, which wins over a
 *   default of that name as an axis always does. A PHASE.p override wins over a p override.
 */
import { didYouMean } from "./closest.js";
import { endSentence } from "./errorWording.js";
import { type Override, overrideError, PARAM_NAME } from "./overrides.js";
import type { ParamValue, PhaseSpec } from "./types.js";

/** An override whose target has been split into phase and parameter. */
export interface ResolvedOverride {
  override: Override;
  /** The phase of `PHASE.p`; null for `p`, which reaches every phase that has it. */
  phase: string | null;
  param: string;
  /** Set once a phase took it: one no phase took is an error once every phase is built. */
  applied: boolean;
}

/**
 * Splits each target against the sweep's phase names: `a.b.lr` is phase `a.b`'s `lr` when there
 * is such a phase (the longest phase name wins), else the parameter `a.b.lr` of every phase.
 */
export function resolveOverrides(
  overrides: readonly Override[],
  phaseNames: readonly string[],
): ResolvedOverride[] {
  const byPhase = [...phaseNames].sort((a, b) => b.length - a.length);
  const seen = new Map<string, Override>();
  return overrides.map((override) => {
    const phase = byPhase.find((name) => override.target.startsWith(`${name}.`)) ?? null;
    const param = phase === null ? override.target : override.target.slice(phase.length + 1);
    if (!PARAM_NAME.test(param))
      throw overrideError(
        override.arg,
        `"${param}" is not a parameter name: letters, digits, _, - and . after a letter or _ (as in {placeholders})`,
      );
    if (param === "phase")
      throw overrideError(
        override.arg,
        '"phase" is reserved: it is the phase name (in output_dir and in the results CSV), not a parameter',
      );
    const key = JSON.stringify([phase, param]);
    const earlier = seen.get(key);
    if (earlier)
      throw overrideError(
        override.arg,
        `${override.target} is also set by --set ${earlier.arg}; give its values in one --set`,
      );
    seen.set(key, override);
    return { override, phase, param, applied: false };
  });
}

type Axes = PhaseSpec["axes"];
type Spellings = NonNullable<PhaseSpec["writtenAs"]>;

/**
 * The phase's axes and spellings after the overrides that reach it. `has` holds the parameters
 * the phase declares and the placeholders its templates use.
 */
export function overridePhase(
  phase: string,
  has: ReadonlySet<string>,
  resolved: readonly ResolvedOverride[],
  axes: Axes,
  writtenAs: Spellings | undefined,
): { axes: Axes; writtenAs: Spellings | undefined } {
  const mine = new Map<string, ResolvedOverride>();
  for (const entry of resolved) {
    if (entry.phase === phase) {
      if (!has.has(entry.param) && entry.param !== "seed")
        throw overrideError(
          entry.override.arg,
          `phase "${phase}" has no parameter "${entry.param}" and uses no {${entry.param}} in its command or output_dir${endSentence(didYouMean(entry.param, has))}${NEW_PARAM_RULE}`,
        );
      mine.set(entry.param, entry);
    } else if (entry.phase === null && (has.has(entry.param) || entry.param === "seed")) {
      // Reached this phase even where a PHASE.p override wins over it here.
      entry.applied = true;
      if (!mine.has(entry.param)) mine.set(entry.param, entry);
    }
  }
  if (mine.size === 0) return { axes, writtenAs };
  const next = axes.map((axis) => ({ ...axis }));
  const spellings: Spellings = { ...writtenAs };
  for (const [param, entry] of mine) {
    entry.applied = true;
    const values: ParamValue[] = entry.override.values;
    const axis = next.find((candidate) => candidate.name === param);
    if (axis) axis.values = values;
    else next.push({ name: param, values });
    delete spellings[param];
    if (Object.keys(entry.override.spellings).length > 0) spellings[param] = { ...entry.override.spellings };
  }
  return { axes: next, writtenAs: Object.keys(spellings).length > 0 ? spellings : undefined };
}

const NEW_PARAM_RULE =
  "A --set may add a parameter only where a {placeholder} uses it (or seed, which tasks see in $LABSWEEP_PARAMS)";

/**
 * Refuses an override no phase took: a `p` no phase has or uses (with a "did you mean" over the
 * sweep's parameters), or a `PHASE.p` whose PHASE is no phase.
 */
export function rejectUnapplied(
  resolved: readonly ResolvedOverride[],
  phaseNames: readonly string[],
  known: ReadonlySet<string>,
  what: { commandOnly: boolean },
): void {
  for (const entry of resolved) {
    if (entry.applied) continue;
    const { arg, target } = entry.override;
    const dot = target.indexOf(".");
    if (dot > 0 && !what.commandOnly) {
      const phase = target.slice(0, dot);
      throw overrideError(
        arg,
        `no phase "${phase}" and no parameter "${target}"${endSentence(didYouMean(phase, phaseNames))}Phases: ${phaseNames.join(", ")}`,
      );
    }
    const hint = endSentence(didYouMean(entry.param, known));
    const names = [...known].sort().join(", ") || "(none)";
    throw overrideError(
      arg,
      what.commandOnly
        ? `--command uses no {${entry.param}}${hint}It uses: ${names}. ${NEW_PARAM_RULE}`
        : `no phase has a parameter "${entry.param}" or uses {${entry.param}}${hint}Parameters: ${names}. ${NEW_PARAM_RULE}`,
    );
  }
}
