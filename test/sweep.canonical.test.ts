import { describe, expect, it } from "vitest";
import { canonicalText, canonicalValue, taskSignature } from "../src/sweep/canonical.js";
import type { Params, ParamValue } from "../src/sweep/types.js";

describe("canonicalValue", () => {
  it.each<[string, ParamValue | undefined, ParamValue]>([
    ["an integer", 4, 4],
    ["a float", 0.1, 0.1],
    ["-0", -0, 0],
    ['"4"', "4", 4],
    ['"4.0"', "4.0", 4],
    ['"04"', "04", 4],
    ['"+4"', "+4", 4],
    ['" 4 " (CSV padding)', " 4 ", 4],
    ['"1e-3"', "1e-3", 0.001],
    ['"1E3"', "1E3", 1000],
    ['".5"', ".5", 0.5],
    ['"5."', "5.", 5],
    ['"-0.0"', "-0.0", 0],
    ["true", true, true],
    ['"true"', "true", true],
    ['"True" (pandas)', "True", true],
    ['"TRUE"', "TRUE", true],
    ["false", false, false],
    ['"False"', "False", false],
    ["null", null, null],
    ["undefined (a missing CSV cell)", undefined, null],
    ['""', "", null],
    ["Infinity (YAML .inf)", Number.POSITIVE_INFINITY, "inf"],
    ["-Infinity", Number.NEGATIVE_INFINITY, "-inf"],
    ["NaN (YAML .nan)", Number.NaN, "nan"],
    ['"inf" (Python)', "inf", "inf"],
    ['"-inf"', "-inf", "-inf"],
    ['"Infinity"', "Infinity", "inf"],
    ['".inf"', ".inf", "inf"],
    ['"NaN"', "NaN", "nan"],
    ['"yes" (a string in YAML 1.2)', "yes", "yes"],
    ['"0x10" (not decimal)', "0x10", "0x10"],
    ['"1_000"', "1_000", "1_000"],
    ['"1.2.3"', "1.2.3", "1.2.3"],
    ['" a " keeps its spaces', " a ", " a "],
    ["a plain string", "cnn", "cnn"],
    ["a list, item by item", [1, "2", "True", null], [1, 2, true, null]],
    ["a map, keys sorted", { b: "1.0", a: [true] }, { a: [true], b: 1 }],
  ])("%s", (_label, input, expected) => {
    expect(canonicalValue(input)).toEqual(expected);
  });

  it("sorts map keys at every depth", () => {
    expect(Object.keys(canonicalValue({ z: 1, a: { y: 1, b: 2 } }) as object)).toEqual(["a", "z"]);
    expect(canonicalText({ z: 1, a: { y: 1, b: 2 } })).toBe('{"a":{"b":2,"y":1},"z":1}');
  });
});

describe("canonicalText", () => {
  const equalGroups: Array<Array<ParamValue | undefined>> = [
    [4, 4.0, "4", "4.0", "4e0", " 4"],
    [0.001, "1e-3", "0.001", "1.0E-3"],
    [true, "true", "True", "TRUE"],
    [false, "false", "False"],
    [null, "", undefined],
    [Number.POSITIVE_INFINITY, "inf", "Infinity", "INF"],
    [Number.NaN, "nan", "NaN"],
    [
      [1, 2],
      ["1", "2.0"],
    ],
    [
      { a: 1, b: "x" },
      { b: "x", a: "1" },
    ],
  ];

  it.each(equalGroups.map((group) => [group]))("is one text for every spelling in %j", (group) => {
    const texts = new Set(group.map((value) => canonicalText(value)));
    expect(texts.size).toBe(1);
  });

  it("keeps different values apart", () => {
    const firsts = equalGroups.map((group) => canonicalText(group[0]));
    expect(new Set(firsts).size).toBe(firsts.length);
    const distinct: Array<ParamValue> = [
      "4",
      "4.5",
      "4a",
      "yes",
      "on",
      "1",
      true,
      "None",
      "null",
      [4],
      "[4]",
      Number.NEGATIVE_INFINITY,
    ];
    const texts = distinct.map((value) => canonicalText(value));
    expect(new Set(texts).size).toBe(texts.length);
    // null, "", NaN and Infinity used to share JSON's "null".
    expect(canonicalText(Number.POSITIVE_INFINITY)).not.toBe(canonicalText(null));
    expect(canonicalText(Number.NaN)).not.toBe(canonicalText(""));
  });
});

describe("taskSignature", () => {
  // The golden fixture's template (test/fixtures/sweep/main.yaml).
  const command = "python train.py --model {model} --lr {lr} --seed {seed}";
  const base: Params = { model: "cnn", lr: 0.1, seed: 1 };

  it("is a 22-character base64url string, stable across runs and releases", () => {
    const signature = taskSignature(base, command);
    expect(signature).toMatch(/^[A-Za-z0-9_-]{22}$/);
    // Ledgers key tasks by this: a change here makes every existing task look new.
    expect(signature).toBe("PnQCouJGlMztkpwLkxzCNo");
  });

  it.each<[string, Params]>([
    ["keys in another order", { seed: 1, lr: 0.1, model: "cnn" }],
    ["numbers spelt as text", { model: "cnn", lr: "0.1", seed: "1" }],
    ["a float spelling of an integer", { model: "cnn", lr: 0.1, seed: 1.0 }],
    ["an exponent", { model: "cnn", lr: "1e-1", seed: "1.0" }],
  ])("is the same for %s", (_label, params) => {
    expect(taskSignature(params, command)).toBe(taskSignature(base, command));
  });

  it.each<[string, Params, string]>([
    ["another value", { ...base, lr: 0.01 }, command],
    ["another parameter", { ...base, extra: 1 }, command],
    ["a parameter fewer", { model: "cnn", lr: 0.1 }, command],
    ["a string that only looks alike", { ...base, model: "cnn " }, command],
    ["another command template", base, `${command} --fast`],
    ["a template differing in whitespace only", base, `${command} `],
  ])("differs for %s", (_label, params, template) => {
    expect(taskSignature(params, template)).not.toBe(taskSignature(base, command));
  });

  it('treats "True"/true and null/"" alike but a present null apart from an absent parameter', () => {
    expect(taskSignature({ flag: "True" }, "x")).toBe(taskSignature({ flag: true }, "x"));
    expect(taskSignature({ tag: "" }, "x")).toBe(taskSignature({ tag: null }, "x"));
    expect(taskSignature({ tag: null }, "x")).not.toBe(taskSignature({}, "x"));
  });

  it("does not confuse Infinity or NaN with null", () => {
    const none = taskSignature({ clip: null }, "x");
    expect(taskSignature({ clip: Number.POSITIVE_INFINITY }, "x")).not.toBe(none);
    expect(taskSignature({ clip: Number.NaN }, "x")).not.toBe(none);
    expect(taskSignature({ clip: Number.POSITIVE_INFINITY }, "x")).toBe(taskSignature({ clip: "inf" }, "x"));
  });

  it("keeps the parameters apart from the command template", () => {
    // A naive concatenation would make these two collide.
    expect(taskSignature({ a: "1" }, "run")).not.toBe(taskSignature({ a: "1run" }, ""));
  });
});
