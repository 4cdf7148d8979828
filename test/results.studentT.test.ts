/** Student's t quantiles against published table values (to the table's three decimals). */
import { describe, expect, it } from "vitest";
import { studentTCdf, studentTQuantile } from "../src/results/studentT.js";

describe("studentTQuantile", () => {
  it("matches the t table at 0.975 (two-sided 95%)", () => {
    const table: Array<[number, number]> = [
      [1, 12.706],
      [2, 4.303],
      [3, 3.182],
      [4, 2.776],
      [5, 2.571],
      [9, 2.262],
      [10, 2.228],
      [29, 2.045],
      [30, 2.042],
      [100, 1.984],
      [1000, 1.962],
    ];
    for (const [df, t] of table) expect(studentTQuantile(0.975, df), `df=${df}`).toBeCloseTo(t, 3);
  });

  it("matches the t table at other levels and tends to the normal", () => {
    expect(studentTQuantile(0.995, 4)).toBeCloseTo(4.604, 3);
    expect(studentTQuantile(0.95, 7)).toBeCloseTo(1.895, 3);
    expect(studentTQuantile(0.9, 20)).toBeCloseTo(1.325, 3);
    expect(studentTQuantile(0.975, 1e7)).toBeCloseTo(1.959964, 5);
    expect(studentTQuantile(0.025, 4)).toBeCloseTo(-2.776, 3);
    expect(studentTQuantile(0.5, 3)).toBe(0);
  });

  it("inverts the CDF, and refuses what has no quantile", () => {
    for (const df of [1, 2, 3.5, 12, 60]) {
      for (const p of [0.6, 0.9, 0.975, 0.999])
        expect(studentTCdf(studentTQuantile(p, df), df), `p=${p} df=${df}`).toBeCloseTo(p, 10);
    }
    expect(studentTCdf(0, 5)).toBeCloseTo(0.5, 12);
    expect(studentTQuantile(0.975, 0)).toBeNaN();
    expect(studentTQuantile(1, 3)).toBeNaN();
    expect(studentTQuantile(0, 3)).toBeNaN();
  });
});
