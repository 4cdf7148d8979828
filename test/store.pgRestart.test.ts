/**
 * A PostgreSQL restart of a few seconds is a blip, not the end of a run: statements and
 * transactions that lost their connection are tried again (postgresDb.ts) and no background
 * promise is left to reject unhandled. Against a real server started for this file, restarted
 * (`pg_ctl stop -m fast`: every connection cut) while `labsweep run` works. Run `npm run build`
 * first: the CLI runs dist/.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { describe, expect, it } from "vitest";
import { openPostgresDb } from "../src/ledger/postgresDb.js";
import { runCli, startCli, tempDir, watch, writeFile } from "./helpers/cli.js";
import { fakeGpuEnv } from "./helpers/fakeGpus.js";
import { usePostgres } from "./helpers/postgres.js";

const server = usePostgres();

/** The x column of out/final_results.csv, in file order; [] before the file exists. */
function writtenXs(dir: string): number[] {
  const path = join(dir, "out", "final_results.csv");
  if (!existsSync(path)) return [];
  const [header = [], ...rows] = parse(readFileSync(path, "utf8")) as string[][];
  const column = header.indexOf("x");
  return rows.map((row) => Number(row[column]));
}

/** A sweep of `count` half-second tasks writing to out/; returns the x values. */
function sweep(dir: string, count: number): number[] {
  const xs = Array.from({ length: count }, (_, i) => i + 1);
  writeFile(
    dir,
    "sweep.yaml",
    `command: sleep 0.5 && echo {x}\nretries: 0\ng:\n  output_dir: out\n  combinations:\n    - x: [${xs.join(", ")}]\n`,
  );
  return xs;
}

/** Waits until a few rows are written, and restarts the server while the rest are to come. */
async function restartMidway(dir: string, count: number): Promise<void> {
  for (let i = 0; i < 600 && writtenXs(dir).length < 2; i++)
    await new Promise((resolve) => setTimeout(resolve, 50));
  const before = writtenXs(dir).length;
  expect(before).toBeGreaterThanOrEqual(2);
  expect(before).toBeLessThan(count);
  await server().restart({ downMs: 2000 });
}

// Strict is Node's default too: an unhandled rejection would end the process with exit 1.
const strict = { NODE_OPTIONS: "--unhandled-rejections=strict" };

describe("a PostgreSQL restart", () => {
  it("mid-run is ridden out: `run --store postgres://…` exits 0 with every row once, no unhandled rejection", async () => {
    const dir = tempDir("labsweep-pg-restart-");
    const xs = sweep(dir, 20);
    const store = await server().createDatabase();
    const run = watch(
      startCli(["run", "sweep.yaml", "--store", store, "--slots", "4", "--no-dashboard"], {
        cwd: dir,
        env: strict,
      }),
    );
    await restartMidway(dir, xs.length);
    const result = await run.result;
    expect(result.code, result.stderr).toBe(0);
    expect(writtenXs(dir).sort((a, b) => a - b)).toEqual(xs);
  });

  it("during serve is ridden out: serve and its agent finish the sweep, every row once", async () => {
    const dir = tempDir("labsweep-pg-restart-");
    const xs = sweep(dir, 16);
    const store = await server().createDatabase();
    const serve = watch(
      startCli(["serve", "sweep.yaml", "--store", store, "--exit-when-done", "--port", "0"], {
        cwd: dir,
        env: strict,
      }),
    );
    await serve.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
    const url = (/^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(serve.output()) as RegExpExecArray)[1] as string;
    const token = (await runCli(["token", "--state", join(dir, ".labsweep")])).stdout.trim();
    const env = { ...fakeGpuEnv([]), ...strict, LABSWEEP_TOKEN: token, LABSWEEP_GPU_LOCK_DIR: tempDir() };
    const agent = watch(
      startCli(["agent", "--server", url, "--state", join(dir, "agent"), "--slots", "4"], { env }),
    );
    await restartMidway(dir, xs.length);
    const [served, worked] = await Promise.all([serve.result, agent.result]);
    expect(served.code, served.stderr).toBe(0);
    expect(worked.code, worked.stderr).toBe(0);
    expect(writtenXs(dir).sort((a, b) => a - b)).toEqual(xs);
  });

  it("a statement is retried while the server restarts, but one that cannot reach it at first fails at once", async () => {
    const store = await server().createDatabase();
    const db = openPostgresDb(store);
    try {
      expect(await db.one("SELECT 1 AS one")).toEqual({ one: 1 });
      const restarting = server().restart({ downMs: 1500 });
      // Issued while the server is going down and away: answered once it is back.
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(await db.transaction((tx) => tx.one("SELECT 2 AS two"))).toEqual({ two: 2 });
      expect(await db.one("SELECT 3 AS three")).toEqual({ three: 3 });
      await restarting;
    } finally {
      await db.close();
    }
    const nowhere = openPostgresDb(store.replace(`:${server().port}/`, ":1/"), { reconnectForMs: 60_000 });
    try {
      const started = Date.now();
      await expect(nowhere.one("SELECT 1")).rejects.toThrow(/ECONNREFUSED/);
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      await nowhere.close();
    }
  });
});
