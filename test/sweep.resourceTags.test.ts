/** `resources.tags` in configs: defaults, how phases inherit it, its errors, and task identity. */
import { describe, expect, it } from "vitest";
import type { ConfigError } from "../src/sweep/configError.js";
import { expandPhase } from "../src/sweep/expand.js";
import { parseSweepFile } from "../src/sweep/loadSweep.js";
import type { PhaseSpec, Resources } from "../src/sweep/types.js";
import { configErrorOf } from "./helpers/configErrors.js";

const FILE = "/sweeps/exp/sweep.yaml";
const TRAIN = "command: python train.py --lr {lr}\nexp:\n  combinations:\n    - lr: [0.1, 0.2]\n";

function phases(text: string): PhaseSpec[] {
  return parseSweepFile(FILE, text).phases;
}

function resourcesOf(text: string, phase = "exp"): Resources {
  const found = phases(text).find((p) => p.name === phase);
  if (!found) throw new Error(`no phase ${phase}`);
  return found.policy.resources;
}

function errorOf(text: string): ConfigError {
  return configErrorOf(FILE, text);
}

describe("resources.tags", () => {
  it("defaults to no tags", () => {
    expect(resourcesOf(TRAIN).tags).toEqual([]);
    expect(resourcesOf(`resources: {gpus: 1}\n${TRAIN}`)).toEqual({
      gpus: 1,
      gpuMemoryGb: 0,
      cpus: 1,
      tags: [],
    });
  });

  it("is read at file level and per phase; a phase's tags replace the file's", () => {
    expect(resourcesOf(`resources:\n  tags: [big, a100]\n${TRAIN}`).tags).toEqual(["big", "a100"]);
    const text =
      "command: run {x}\nresources: {tags: [big]}\na:\n  combinations:\n    - x: [1]\nb:\n  resources: {tags: [a100], gpus: 2}\n  combinations:\n    - x: [2]\n";
    expect(resourcesOf(text, "a").tags).toEqual(["big"]);
    expect(resourcesOf(text, "b")).toEqual({ gpus: 2, gpuMemoryGb: 0, cpus: 1, tags: ["a100"] });
  });

  it("drops repeated tags", () => {
    expect(resourcesOf(`resources: {tags: [big, big]}\n${TRAIN}`).tags).toEqual(["big"]);
  });

  it("suggests tags for the typo tgas and lists it among the resource keys", () => {
    const error = errorOf("command: run\nexp:\n  resources:\n    gpus: 1\n    tgas: [big]\n");
    expect(error.message).toContain('unknown key "tgas" — did you mean "tags"?');
    expect(error.message).toContain("tags (default: [] (any agent))");
    expect(error.keyPath).toBe("exp.resources.tgas");
    expect(error.place?.line).toBe(5);
    expect(error.message).not.toContain("\n");
  });

  it("suggests tags for a typo at file level too", () => {
    const error = errorOf(`resources:\n  tgas: [big]\n${TRAIN}`);
    expect(error.message).toContain('did you mean "tags"?');
    expect(error.keyPath).toBe("resources.tgas");
  });

  it("rejects tags that are not a list of non-empty strings", () => {
    for (const bad of ["tags: big", "tags: [1]", 'tags: [""]', "tags: [[big]]", "tags: {big: 1}"]) {
      const error = errorOf(`command: run\nexp:\n  resources:\n    ${bad}\n`);
      expect(error.keyPath, bad).toMatch(/^exp\.resources\.tags/);
      expect(error.place?.line, bad).toBe(4);
    }
  });

  it("leaves task signatures unchanged: tags are run policy, not identity", () => {
    const signatures = (text: string) =>
      [...expandPhase(phases(text)[0] as PhaseSpec)].map((t) => t.signature);
    const plain = signatures(TRAIN);
    expect(plain).toHaveLength(2);
    expect(signatures(`resources: {tags: [big]}\n${TRAIN}`)).toEqual(plain);
  });
});
