/**
 * Where a networked agent runs a leased task (src/agent/runDir.ts): a snapshot it can see keeps
 * its provenance; one it cannot falls back to the config's dir, then --workdir, and the task then
 * carries no snapshot, so the agent records the git state of where it really ran.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { taskHere } from "../src/agent/runDir.js";
import type { Task } from "../src/protocol/interfaces.js";
import { tempDir } from "./helpers/cli.js";

const git = { commit: "a".repeat(40), dirty: false, diffSha256: null };

function task(cwd: string, sourceDir?: string): Task {
  return {
    id: 1,
    signature: "s",
    params: {},
    command: "true",
    cwd,
    configFile: "sweep.yaml",
    policy: {} as Task["policy"],
    state: "running",
    attempts: 0,
    ...(sourceDir !== undefined && { snapshot: { sourceDir, git } }),
  };
}

describe("taskHere", () => {
  it("runs a snapshot task from the copy where the copy exists, keeping its provenance", () => {
    const copy = tempDir();
    expect(taskHere(task(copy, tempDir()), undefined)).toEqual(task(copy, expect.any(String) as never));
    expect(taskHere(task(copy, "/nowhere"), undefined)?.snapshot?.git).toEqual(git);
  });

  it("falls back to the config's dir, then --workdir, without the snapshot", () => {
    const source = tempDir();
    const missing = join(tempDir(), "gone");
    expect(taskHere(task(missing, source), undefined)).toEqual(task(source));
    const workdir = tempDir();
    expect(taskHere(task(missing, join(tempDir(), "gone")), workdir)).toEqual(task(workdir));
    expect(taskHere(task(missing), workdir)).toEqual(task(workdir));
    expect(taskHere(task(missing), undefined)).toBeNull();
  });
});
