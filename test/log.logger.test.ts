import { expect, describe as group, it } from "vitest";
import { describe, logger } from "../src/log/logger.js";

group("logger", () => {
  it("prefixes each line with its scope and writes it to the sink it was given", () => {
    const lines: string[] = [];
    logger("agent", (line) => lines.push(line)).warn("the coordinator refused a lease");
    logger("agent", (line) => lines.push(line)).info("task 3 (attempt 1) started");
    logger("labsweep", (line) => lines.push(line)).warn("cannot write results to /r: EACCES");
    expect(lines).toEqual([
      "labsweep agent: the coordinator refused a lease",
      "labsweep agent: task 3 (attempt 1) started",
      "labsweep: cannot write results to /r: EACCES",
    ]);
  });

  it("describes an error in one line with every cause it wraps", () => {
    const inner = new Error("connect ECONNREFUSED 127.0.0.1:1");
    const outer = new Error("fetch failed", { cause: new Error("request", { cause: inner }) });
    expect(describe(outer)).toBe("fetch failed: request: connect ECONNREFUSED 127.0.0.1:1");
    expect(describe(new Error("plain", { cause: "a string" }))).toBe("plain: a string");
    expect(describe(42)).toBe("42");
  });
});
