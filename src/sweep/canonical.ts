import { hash } from "node:crypto";
import type { Params, ParamValue } from "./types.js";

/**
 * The value-equality rule for parameters. Results come back from CSV cells as text, so a number
 * and its decimal spelling must be the same value: 4, 4.0, "4" and "4.0" are equal; "1e-3" equals
 * 0.001; true, "true" and "True" (pandas' spelling) are equal; null and "" are equal; YAML's .inf,
 * -.inf and .nan equal "inf", "-inf" and "nan" (Python's spelling, any case; also "Infinity").
 * Every other string compares as itself. Lists compare item by item, maps key by key (key order
 * ignored).
 */
export function canonicalValue(value: ParamValue | undefined): ParamValue {
  if (value === undefined || value === null || value === "") return null;
  if (typeof value === "number") return canonicalNumber(value);
  if (typeof value === "boolean") return value;
  if (typeof value === "string") return canonicalString(value);
  if (Array.isArray(value)) return value.map(canonicalValue);
  const sorted: Record<string, ParamValue> = {};
  for (const key of Object.keys(value).sort()) sorted[key] = canonicalValue(value[key]);
  return sorted;
}

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const NON_FINITE = /^([+-]?)\.?(inf|infinity|nan)$/i;

/**
 * Finite numbers stay numbers (-0 is 0). JSON has no Infinity or NaN (it would write both as
 * null, equal to ""), so those become the strings Python and pandas write: "inf", "-inf", "nan".
 */
function canonicalNumber(value: number): ParamValue {
  if (Number.isNaN(value)) return "nan";
  if (!Number.isFinite(value)) return value > 0 ? "inf" : "-inf";
  return Object.is(value, -0) ? 0 : value;
}

function canonicalString(text: string): ParamValue {
  const trimmed = text.trim();
  if (DECIMAL.test(trimmed)) return canonicalNumber(Number(trimmed));
  const nonFinite = NON_FINITE.exec(trimmed);
  if (nonFinite) {
    if ((nonFinite[2] as string).toLowerCase() === "nan") return "nan";
    return nonFinite[1] === "-" ? "-inf" : "inf";
  }
  if (trimmed === "true" || trimmed === "True" || trimmed === "TRUE") return true;
  if (trimmed === "false" || trimmed === "False" || trimmed === "FALSE") return false;
  return text;
}

/** The text two values share exactly when they are equal under `canonicalValue`. */
export function canonicalText(value: ParamValue | undefined): string {
  return JSON.stringify(canonicalValue(value));
}

/**
 * A task's identity: its effective parameters and its command template, never its phase or
 * output dir. Two phases that describe the same run get the same signature and share one task.
 */
export function taskSignature(params: Params, commandTemplate: string): string {
  const pieces = Object.keys(params)
    .sort()
    .map((key) => signaturePiece(key, params[key]));
  return signatureOf(pieces, commandTemplate);
}

/** One parameter's part of the signed text; expansion memoises these per axis value. */
export function signaturePiece(key: string, value: ParamValue | undefined): string {
  return JSON.stringify([key, canonicalValue(value)]);
}

/** The signature from sorted pieces: the hash of JSON `[[piece, …], template]`, 22 base64url chars. */
export function signatureOf(sortedPieces: readonly string[], commandTemplate: string): string {
  return signer(commandTemplate)(sortedPieces.join(","));
}

/** signatureOf for one template and many tasks: takes the pieces already joined by commas. */
export function signer(commandTemplate: string): (joinedPieces: string) => string {
  const tail = `],${JSON.stringify(commandTemplate)}]`;
  return (joinedPieces) => hash("sha256", `[[${joinedPieces}${tail}`, "base64url").slice(0, 22);
}
