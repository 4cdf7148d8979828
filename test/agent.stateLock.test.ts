/**
 * An agent's state dir is held by a kernel lock, as the coordinator's is: of agents starting at
 * once exactly one takes it, a holder killed by SIGKILL frees it, and a pid left behind by a dead
 * holder — which a live, unrelated process may have been given since (a reboot) — keeps no one
 * out. Real processes, racing; run `npm run build` first.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { openAgentState } from "../src/agent/agentState.js";
import { REPO_ROOT, tempDir } from "./helpers/cli.js";

const STATE_MODULE = join(REPO_ROOT, "dist", "agent", "agentState.js");

/**
 * Opens the state dir and holds it until killed; or prints why not and exits 3. It drops the
 * handle and collects garbage first: a lock must not end with the last reference to it.
 */
const HOLDER = `
const { openAgentState } = await import(process.argv[1]);
try {
  openAgentState(process.argv[2]);
  globalThis.gc();
  process.stdout.write("won\\n");
  setInterval(() => {}, 60_000);
} catch (error) {
  process.stdout.write("lost: " + error.message + "\\n");
  process.exit(3);
}
`;

const children = new Set<ChildProcess>();
afterEach(() => {
  for (const child of children)
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  children.clear();
});

function contend(stateDir: string): { child: ChildProcess; line: Promise<string> } {
  const child = spawn(
    process.execPath,
    ["--expose-gc", "--input-type=module", "-e", HOLDER, STATE_MODULE, stateDir],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  children.add(child);
  const line = new Promise<string>((resolve, reject) => {
    let text = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      text += chunk.toString();
      if (text.includes("\n")) resolve(text.split("\n")[0] as string);
    });
    child.once("exit", (code, signal) => {
      if (!text.includes("\n")) reject(new Error(`contender exited ${code ?? signal} without a word`));
    });
  });
  return { child, line };
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

describe("an agent's state-dir lock", () => {
  it("is not kept by a dead holder's pid that a live process now has", () => {
    const stateDir = tempDir();
    // What a killed agent of an older labsweep left: its pid, now pid 1's (always alive).
    writeFileSync(join(stateDir, "agent.lock"), "1\n");
    const state = openAgentState(stateDir);
    state.release();
  });

  it("goes to exactly one of agents starting at once, who is named to a latecomer; kill -9 frees it", async () => {
    const stateDir = tempDir();
    for (let round = 0; round < 4; round++) {
      const contenders = [contend(stateDir), contend(stateDir), contend(stateDir)];
      const lines = await Promise.all(contenders.map((contender) => contender.line));
      const winners = contenders.filter((_, index) => lines[index] === "won");
      expect(winners, `round ${round}: ${lines.join(" | ")}`).toHaveLength(1);
      for (const line of lines.filter((text) => text !== "won"))
        expect(line).toMatch(/^lost: another labsweep agent .*uses the state dir/);
      const winner = winners[0] as (typeof contenders)[number];
      expect(await contend(stateDir).line).toContain(`(pid ${winner.child.pid})`);
      winner.child.kill("SIGKILL");
      await Promise.all(contenders.map((contender) => exited(contender.child)));
    }
    const after = contend(stateDir);
    expect(await after.line).toBe("won");
    after.child.kill("SIGKILL");
  });

  it("is held against this very process too, and released by its release", () => {
    const stateDir = tempDir();
    const state = openAgentState(stateDir);
    expect(() => openAgentState(stateDir)).toThrow(/another labsweep agent/);
    state.release();
    openAgentState(stateDir).release();
  });
});
