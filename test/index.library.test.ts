/**
 * The library surface (package.json `main`/`types`), imported from dist/ as a user would:
 * load a sweep, open its ledger, run it locally. Run `npm run build` first.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { tempDir } from "./helpers/cli.js";

const DIST_INDEX = join(import.meta.dirname, "..", "dist", "index.js");

describe("the library surface", () => {
  it("is where package.json says", () => {
    const pkg = JSON.parse(readFileSync(join(import.meta.dirname, "..", "package.json"), "utf8"));
    expect(pkg.main).toBe("dist/index.js");
    expect(existsSync(DIST_INDEX)).toBe(true);
    expect(existsSync(join(import.meta.dirname, "..", "dist", "index.d.ts"))).toBe(true);
  });

  it("loads a sweep, opens its ledger and runs it locally", async () => {
    const lib = (await import(DIST_INDEX)) as typeof import("../src/index.js");
    const dir = tempDir();
    const yaml = `command: echo {x}\nretries: 0\nmain:\n  output_dir: ${JSON.stringify(join(dir, "out"))}\n  combinations:\n    - x: [1, 2, 3]\n`;
    const sweep = lib.loadSweep([{ file: join(dir, "sweep.yaml"), text: yaml }]);
    expect(lib.gridSize(sweep.phases[0] as (typeof sweep.phases)[number])).toBe(3);
    expect(() => lib.loadSweep([{ file: "bad.yaml", text: "main: {}\n" }])).toThrow(lib.ConfigError);
    const stateDir = join(dir, ".labsweep");
    const ledger = await lib.prepareLedger(stateDir, sweep);
    try {
      const { exit } = await lib.runLocally(ledger.db, { stateDir, slots: 1 });
      expect(exit.kind).toBe("done");
      expect(await lib.statusReport(ledger.db)).toMatchObject({ succeeded: 3, failed: 0 });
    } finally {
      await ledger.db.close();
      ledger.release();
    }
  }, 60_000);
});
