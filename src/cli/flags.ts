import { UsageError } from "./exitCodes.js";

/**
 * Flags more than one command takes, parsed one way: a bad value is a UsageError (exit 2) that
 * names the flag and what it got.
 */

/** Commander's collector for a repeatable flag (`--tag a --tag b`). */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** A whole number ≥ 1 (`--slots`). */
export function positiveInteger(flag: string, text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1)
    throw new UsageError(`${flag} must be a positive whole number, got "${text}"`);
  return value;
}

/** A number of seconds ≥ 0 (`--grace`, `--progress-every`, `--probe-timeout`). */
export function seconds(flag: string, text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0)
    throw new UsageError(`${flag} must be a number of seconds, got "${text}"`);
  return value;
}

/** GPU indices like `0,2` (`--gpus`). */
export function gpuList(text: string): number[] {
  const indices = text.split(",").map((part) => Number(part.trim()));
  if (indices.some((index) => !Number.isInteger(index) || index < 0))
    throw new UsageError(`--gpus takes GPU indices like 0,2 — got "${text}"`);
  return indices;
}

/** `--tag` values: repeatable and comma-separated, blanks dropped, each tag once. */
export function tagList(flags: string[] | undefined): string[] {
  return [
    ...new Set(
      (flags ?? [])
        .flatMap((tag) => tag.split(","))
        .map((tag) => tag.trim())
        .filter(Boolean),
    ),
  ];
}

/** A TCP port, 0 for a free one (`--port`). */
export function portNumber(text: string | undefined): number {
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65_535)
    throw new UsageError(`--port must be 0–65535, got "${text}"`);
  return port;
}
