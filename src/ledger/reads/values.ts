/** Helpers for parameter and metric values as they come out of the ledger. */

/** PostgreSQL's ->> gives text: numbers that were numbers become numbers again. */
export function typed(value: unknown): unknown {
  if (value === undefined) return null;
  if (typeof value === "string" && value.trim() !== "" && /^-?[\d.]+(e[-+]?\d+)?$/i.test(value)) {
    const number = Number(value);
    if (Number.isFinite(number)) return number;
  }
  return value;
}

export function compareValues(a: unknown, b: unknown): number {
  if (typeof a === "number" && typeof b === "number") return a - b;
  if (a === null || a === undefined) return b === null || b === undefined ? 0 : -1;
  if (b === null || b === undefined) return 1;
  if (typeof a === "number") return -1;
  if (typeof b === "number") return 1;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}
