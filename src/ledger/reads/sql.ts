import type { Db } from "../db.js";

/**
 * SQL for one key of a JSON column, with the key bound as parameter `$n` (never spliced into
 * the text). SQLite reads `json_extract(col, '$."key"')`, which keeps numbers numbers;
 * PostgreSQL reads `col::jsonb ->> 'key'`, which is text.
 */
export function jsonKey(db: Db, column: "params_json" | "result_json", placeholder: string): string {
  return db.dialect === "postgres"
    ? `(${column}::jsonb ->> ${placeholder})`
    : `json_extract(${column}, ${placeholder})`;
}

/** The value to bind for `jsonKey`'s placeholder. */
export function jsonKeyArg(db: Db, key: string): string {
  return db.dialect === "postgres" ? key : `$."${key.replaceAll('"', '""')}"`;
}

/** Builds a WHERE clause and its parameters, numbering placeholders as they are added. */
export class SqlParams {
  readonly values: unknown[] = [];

  /** Adds a value; returns its placeholder. */
  add(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

/** The numeric value of a text typed into a filter, or null when it is not a number. */
export function numericOf(text: string): number | null {
  if (text.trim() === "") return null;
  const value = Number(text);
  return Number.isFinite(value) ? value : null;
}

/**
 * A condition: the JSON key of `column` equals what a person typed. Numbers match numerically
 * (4 matches 4.0), true/false match JSON booleans, anything else matches as text.
 */
export function jsonEquals(
  db: Db,
  params: SqlParams,
  column: "params_json" | "result_json",
  key: string,
  text: string,
): string {
  const keyAt = params.add(jsonKeyArg(db, key));
  const field = jsonKey(db, column, keyAt);
  const number = numericOf(text);
  const lower = text.trim().toLowerCase();
  const textAt = params.add(text);
  if (db.dialect === "postgres") {
    const type = `jsonb_typeof(${column}::jsonb -> ${keyAt})`;
    if (number !== null)
      return `(CASE WHEN ${type} = 'number' THEN (${field})::double precision = ${params.add(number)} ELSE ${field} = ${textAt} END)`;
    if (lower === "true" || lower === "false")
      return `(${field} = ${params.add(lower)} OR ${field} = ${textAt})`;
    return `${field} = ${textAt}`;
  }
  if (number !== null) return `(${field} = ${params.add(number)} OR ${field} = ${textAt})`;
  if (lower === "true" || lower === "false")
    return `(json_type(${column}, ${keyAt}) = ${params.add(lower)} OR ${field} = ${textAt})`;
  return `${field} = ${textAt}`;
}
