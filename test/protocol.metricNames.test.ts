/** Nested metrics become dotted names; two paths to one name are an error, never an overwrite. */
import { describe, expect, it } from "vitest";
import { flattenMetrics } from "../src/protocol/metricNames.js";

describe("flattenMetrics", () => {
  it("turns nested objects into dotted names and keeps other values", () => {
    expect(
      flattenMetrics({ val: { acc: 1, loss: { mean: 0.5 } }, tags: ["a"], note: "x", none: null }),
    ).toEqual({
      metrics: { "val.acc": 1, "val.loss.mean": 0.5, tags: ["a"], note: "x", none: null },
    });
  });

  it("names a metric reached both nested and dotted", () => {
    expect(flattenMetrics({ "val.acc": 1, val: { acc: 2 } })).toEqual({
      error: 'metric "val.acc" is given twice (once nested, once dotted)',
    });
  });

  it("refuses empty keys and runaway nesting", () => {
    expect(flattenMetrics({ val: { "": 1 } })).toHaveProperty("error");
    let deep: Record<string, unknown> = { x: 1 };
    for (let level = 0; level < 20; level++) deep = { d: deep };
    expect(flattenMetrics(deep)).toHaveProperty("error");
  });

  it("is not fooled by a __proto__ key", () => {
    const hostile = JSON.parse('{"__proto__": {"polluted": 1}, "ok": 2}') as Record<string, unknown>;
    const result = flattenMetrics(hostile);
    expect(result).toEqual({ metrics: { "__proto__.polluted": 1, ok: 2 } });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
