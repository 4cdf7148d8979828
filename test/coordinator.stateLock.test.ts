/**
 * The state-dir lock is a kernel lock: of processes starting at once exactly one takes it, the
 * others are told who holds it, and a holder killed by SIGKILL frees it at once (no stale pid to
 * judge). Real processes, racing; run `npm run build` first.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { acquireStateLock } from "../src/coordinator/stateLock.js";
import { REPO_ROOT, tempDir } from "./helpers/cli.js";

const LOCK_MODULE = join(REPO_ROOT, "dist", "coordinator", "stateLock.js");

/** Takes the lock and holds it until killed; or prints why not and exits 3. */
const HOLDER = `
const { acquireStateLock } = await import(process.argv[1]);
try {
  acquireStateLock(process.argv[2]);
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

interface Contender {
  child: ChildProcess;
  /** The first line it printed: "won" or "lost: …". */
  line: Promise<string>;
}

function contend(stateDir: string): Contender {
  const child = spawn(process.execPath, ["--input-type=module", "-e", HOLDER, LOCK_MODULE, stateDir], {
    stdio: ["ignore", "pipe", "inherit"],
  });
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

describe("the state-dir lock", () => {
  it("goes to exactly one of several processes starting at once, round after round; kill -9 frees it", async () => {
    const stateDir = tempDir();
    for (let round = 0; round < 6; round++) {
      const contenders = [contend(stateDir), contend(stateDir), contend(stateDir)];
      const lines = await Promise.all(contenders.map((contender) => contender.line));
      const winners = contenders.filter((_, index) => lines[index] === "won");
      expect(winners, `round ${round}: ${lines.join(" | ")}`).toHaveLength(1);
      for (const line of lines.filter((text) => text !== "won"))
        expect(line).toMatch(/^lost: another labsweep run holds .*; watch it with `labsweep status`/);
      const winner = winners[0] as Contender;

      // A latecomer is told the holder's pid.
      const late = contend(stateDir);
      expect(await late.line).toContain(`(pid ${winner.child.pid})`);

      // kill -9 leaves no stale lock: the next round starts at once and someone wins.
      winner.child.kill("SIGKILL");
      await Promise.all(contenders.map((contender) => exited(contender.child)));
    }
    const after = contend(stateDir);
    expect(await after.line).toBe("won");
    after.child.kill("SIGKILL");
  });

  it("is held against this very process too, and released by its release", () => {
    const stateDir = tempDir();
    const release = acquireStateLock(stateDir);
    expect(() => acquireStateLock(stateDir)).toThrow(new RegExp(`\\(pid ${process.pid}\\)`));
    release();
    const again = acquireStateLock(stateDir);
    again();
  });
});
