import { spelledText } from "./expand.js";
import { renderTemplate, shellQuoteText } from "./template.js";
import type { OnOom, Params } from "./types.js";

// `on_oom`'s arithmetic: the value a task runs with after each out-of-memory end, and its
// parameters and command with that value. The task's identity keeps the declared value.

/**
 * The most out-of-memory retries of one task: a fractional value scaled towards a `min` of 0
 * would never reach it, and each retry spends nothing else.
 */
export const MAX_OOM_RETRIES = 32;

/**
 * The value after one more out-of-memory end: `current` times `factor` — rounded down when the
 * declared value is an integer, so it always shrinks — and never below `min` (for an integer,
 * `min` rounded up). Null once it cannot shrink further (it is at `min`) or after
 * MAX_OOM_RETRIES: the end is then a failure like any other.
 */
export function nextOomValue(
  onOom: OnOom,
  declared: number,
  current: number,
  retries: number,
): number | null {
  if (retries >= MAX_OOM_RETRIES) return null;
  const integer = Number.isInteger(declared);
  const scaled = current * onOom.factor;
  const next = integer ? Math.max(Math.ceil(onOom.min), Math.floor(scaled)) : Math.max(onOom.min, scaled);
  return next < current ? next : null;
}

/**
 * A task's parameters and command with `value` in place of the declared one: what its attempt
 * runs (command placeholders, LABSWEEP_PARAMS), rendered as expand.ts renders the declared ones.
 */
export function withOomValue(
  onOom: OnOom,
  params: Params,
  value: number,
): { params: Params; command: string } {
  const scaled: Params = { ...params, [onOom.param]: value };
  const text = spelledText(onOom.writtenAs);
  const command = renderTemplate(onOom.commandTemplate, scaled, (item, name, context) =>
    shellQuoteText(text(item, name), context),
  );
  return { params: scaled, command };
}
