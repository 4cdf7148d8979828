import { describe, expect, it } from "vitest";
import { cellValue, type MetricColumn, metricReaders } from "../src/results/metricCells.js";
import { mulberry32 } from "./helpers/random.js";

// The resume scan stores a CSV row's metrics as JSON written straight from its cells
// (metricsJson): it must be exactly JSON.stringify of the values cellValue reads, which is what a
// task's result_json held before, and what `export` and `verify` read back.

function columns(names: string[]): MetricColumn[] {
  return names.map((name, index) => ({ name, column: name, index }));
}

/** Numbers as tools write them: plain, padded, signed, exponents, many digits, very small. */
function numberCells(count: number): string[] {
  const next = mulberry32(7);
  const digits = (length: number) => Array.from({ length }, () => Math.floor(next() * 10)).join("");
  const cells: string[] = [];
  for (let i = 0; i < count; i++) {
    const sign = next() < 0.2 ? "-" : next() < 0.05 ? "+" : "";
    const whole = next() < 0.4 ? "0" : digits(1 + Math.floor(next() * 18));
    const fraction =
      next() < 0.3 ? "" : `.${"0".repeat(Math.floor(next() * 9))}${digits(Math.floor(next() * 18))}`;
    cells.push(`${sign}${whole}${fraction}`);
    cells.push(String(next() * 10 ** (Math.floor(next() * 40) - 20)));
    cells.push(`${digits(1 + Math.floor(next() * 3))}e${next() < 0.5 ? "-" : ""}${Math.floor(next() * 30)}`);
  }
  return cells;
}

const ODD_CELLS = [
  "",
  "0",
  "-0",
  "00",
  "0.0",
  "-0.0",
  "0.5",
  "-0.5",
  "0.50",
  ".5",
  "-.5",
  "5.",
  "+1",
  "1e5",
  "1E-7",
  "0.000001",
  "0.0000001",
  "-0.000001",
  "123456789012345",
  "1234567890123456",
  "0.1234567890123456",
  "9007199254740993",
  "0.30000000000000004",
  "123456789012345678901",
  "1234567890123456789012",
  " 1",
  "1 ",
  "inf",
  "-inf",
  "nan",
  "NaN",
  "Infinity",
  "True",
  "null",
  "0x10",
  "1_000",
  "٣",
  "-",
  'text, with "quotes"',
  "line\nbreak",
  "\\",
  "\u2028",
  '{"a":1}',
];

describe("metricReaders", () => {
  it("writes a row's metrics as JSON.stringify writes the values cellValue reads", () => {
    const cells = [...ODD_CELLS, ...numberCells(20_000)];
    const { metricsOf, metricsJson } = metricReaders(columns(["loss", "acc", "note"]));
    for (let i = 0; i < cells.length; i++) {
      const row = [
        cells[i] as string,
        cells[(i * 7 + 3) % cells.length] as string,
        cells[(i * 13 + 1) % cells.length] as string,
      ];
      expect(metricsJson(row), JSON.stringify(row)).toBe(JSON.stringify(metricsOf(row)));
    }
  });

  it("keeps the object's key order and last value for names that are indexes or repeat, and __proto__", () => {
    for (const names of [["b", "2", "a", "1"], ["x", "y", "x"], ["__proto__", "acc"], [], ["constructor"]]) {
      const { metricsOf, metricsJson } = metricReaders(columns(names));
      const row = names.map((_, index) => String(index / 4));
      expect(metricsJson(row), names.join()).toBe(JSON.stringify(metricsOf(row)));
    }
    expect(metricReaders(columns(["__proto__"])).metricsJson(["1"])).toBe('{"__proto__":1}');
  });

  it("reads a missing cell (a short row) as null", () => {
    const { metricsJson } = metricReaders(columns(["a", "b"]));
    expect(metricsJson(["0.5"])).toBe('{"a":0.5,"b":null}');
  });

  it("reads cells by pandas' rules: numbers, empty as null, anything else as text", () => {
    expect([cellValue("4.0"), cellValue(""), cellValue("inf"), cellValue("True"), cellValue(" 2 ")]).toEqual([
      4,
      null,
      "inf",
      "True",
      2,
    ]);
  });
});
