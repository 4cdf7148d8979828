const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses "90s", "30m", "2h", "1h30m", "500ms" or a bare number of seconds into milliseconds.
 * Returns null when the text is not a duration, so the caller can report it with its place.
 */
export function parseDuration(value: unknown): number | null {
  if (typeof value === "number") return Number.isFinite(value) && value >= 0 ? value * 1000 : null;
  if (typeof value !== "string") return null;
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  const part = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let consumed = 0;
  for (const match of text.matchAll(part)) {
    total += Number(match[1]) * (UNIT_MS[match[2] as string] as number);
    consumed += match[0].length;
  }
  return consumed > 0 && consumed === text.length ? total : null;
}

/** Milliseconds as a config would write them: "10m", "1h30m", "90s", "2.5s", "500ms". */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  if (ms % 1000 !== 0 || ms < 60_000) return `${Number((ms / 1000).toFixed(3))}s`;
  let rest = ms / 1000;
  let text = "";
  for (const [unit, seconds] of [
    ["d", 86_400],
    ["h", 3600],
    ["m", 60],
    ["s", 1],
  ] as const) {
    const count = Math.floor(rest / seconds);
    if (count > 0) text += `${count}${unit}`;
    rest -= count * seconds;
  }
  return text;
}
