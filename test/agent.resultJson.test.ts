/**
 * A result file as Python's json.dump writes it by default: bare NaN, Infinity and -Infinity
 * outside strings are read as the Python client stores them ("nan", "inf", "-inf"); the same
 * words inside strings, and anything else that is not JSON, are left as they are.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { parseResultJson } from "../src/agent/resultJson.js";
import { readResult } from "../src/agent/taskFiles.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("parseResultJson", () => {
  it("reads Python's bare non-finite floats as the client's strings", () => {
    expect(parseResultJson('{"loss": NaN, "best": Infinity, "worst": -Infinity, "ok": 1.5}')).toEqual({
      loss: "nan",
      best: "inf",
      worst: "-inf",
      ok: 1.5,
    });
    expect(parseResultJson('{"val": {"curve": [NaN, 1, -Infinity]}}')).toEqual({
      val: { curve: ["nan", 1, "-inf"] },
    });
  });

  it("leaves the words alone inside strings, escaped quotes and keys included", () => {
    const text = String.raw`{"NaN": NaN, "note": "NaN and -Infinity", "q": "say \"NaN\" \\", "Infinity": "x"}`;
    expect(parseResultJson(text)).toEqual({
      NaN: "nan",
      note: "NaN and -Infinity",
      q: 'say "NaN" \\',
      Infinity: "x",
    });
  });

  it("still refuses what is not JSON, with JSON.parse's own error", () => {
    expect(() => parseResultJson('{"loss": NaNa}')).toThrow(SyntaxError);
    expect(() => parseResultJson('{"loss": nan}')).toThrow(SyntaxError);
    expect(() => parseResultJson('{"loss": 1,}')).toThrow(/JSON/);
  });
});

describe("readResult", () => {
  it("takes a hand-written json.dump result with NaN instead of failing the attempt", () => {
    const dir = mkdtempSync(join(tmpdir(), "labsweep-result-"));
    dirs.push(dir);
    const path = join(dir, "result.json");
    writeFileSync(path, '{"loss": NaN, "val": {"acc": Infinity}}');
    expect(readResult(path)).toEqual({ metrics: { loss: "nan", "val.acc": "inf" } });
    writeFileSync(path, '{"loss": NaN');
    expect(readResult(path)).toEqual({
      error: expect.stringContaining("LABSWEEP_RESULT_FILE is not valid JSON"),
    });
  });
});
