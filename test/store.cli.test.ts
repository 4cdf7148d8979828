/**
 * The ledger store chosen with --store / $LABSWEEP_STORE: parsing and masking of store URLs, a
 * SQLite file named by the option, and end to end against a real PostgreSQL server started for
 * this file — `labsweep run --store postgres://…` and `serve` + `agent` write each result row
 * exactly once and `status --store …` agrees, `labsweep migrate` applies versions once even when
 * two start together, and a bad or unreachable store is bad input (exit 2) that names the option,
 * writes nothing and never shows the password.
 * Run `npm run build` first: the CLI tests run bin/labsweep.js, which runs dist/.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { describeStore, parseStore, redactUrl } from "../src/ledger/store.js";
import { type CliResult, runCli, startCli, tempDir, watch, writeFile } from "./helpers/cli.js";
import { usePostgres } from "./helpers/postgres.js";

describe("store URLs", () => {
  it("reads postgres URLs, sqlite: paths and plain paths; defaults to the state dir's file", () => {
    expect(parseStore(undefined, "/state")).toEqual({ kind: "sqlite", path: "/state/ledger.sqlite" });
    expect(parseStore("postgres://u:p@db:5432/lab", "/state")).toEqual({
      kind: "postgres",
      url: "postgres://u:p@db:5432/lab",
    });
    expect(parseStore("postgresql://db/lab", "/s").kind).toBe("postgres");
    expect(parseStore("sqlite:/data/l.sqlite", "/s")).toEqual({ kind: "sqlite", path: "/data/l.sqlite" });
    expect(parseStore("sqlite:///data/l.sqlite", "/s")).toEqual({ kind: "sqlite", path: "/data/l.sqlite" });
    expect(parseStore("/data/l.sqlite", "/s")).toEqual({ kind: "sqlite", path: "/data/l.sqlite" });
  });

  it("rejects unknown schemes and malformed URLs, naming the option and hiding the password", () => {
    expect(() => parseStore("mysql://u:secret@db/lab", "/s")).toThrow(/^--store: unknown store mysql:\/\//);
    expect(() => parseStore("postgres://u:secret@[db/lab", "/s", "LABSWEEP_STORE")).toThrow(
      /^LABSWEEP_STORE: not a valid PostgreSQL URL: postgres:\/\/u:\*\*\*@\[db\/lab$/,
    );
    expect(() => parseStore("sqlite:", "/s")).toThrow(/needs a file path/);
  });

  it("masks passwords wherever they are", () => {
    expect(redactUrl("postgres://lab:s3cr%40t@db:5432/x")).toBe("postgres://lab:***@db:5432/x");
    expect(redactUrl("postgres://db/x?user=a&password=hunter2&sslmode=require")).toBe(
      "postgres://db/x?user=a&password=***&sslmode=require",
    );
    expect(redactUrl("postgres://lab@db/x")).toBe("postgres://lab@db/x");
    expect(describeStore({ kind: "postgres", url: "postgres://a:b@h/d" })).toBe("postgres://a:***@h/d");
  });
});

describe("labsweep with --store sqlite:…", () => {
  it("keeps the ledger in the named file; migrate applies the versions once", async () => {
    const dir = tempDir("labsweep-store-");
    writeFile(dir, "sweep.yaml", "command: echo {x}\ng:\n  combinations:\n    - x: [1, 2]\n");
    const file = join(dir, "elsewhere", "my ledger.sqlite");
    const migrated = await runCli(["migrate", "--store", `sqlite:${file}`], { cwd: dir });
    expect(migrated.stdout).toMatch(
      /^applied migrations 1, 2, 3, 4, \d.* to .*my ledger\.sqlite \(now at version \d+\)\n$/,
    );
    expect(await runCli(["run", join(dir, "sweep.yaml"), "--store", file], { cwd: dir })).toMatchObject({
      code: 0,
    });
    expect(existsSync(join(dir, ".labsweep", "ledger.sqlite"))).toBe(false);
    const status = await runCli(["status", join(dir, "sweep.yaml"), "--json"], {
      cwd: dir,
      env: { LABSWEEP_STORE: `sqlite:${file}` },
    });
    expect(JSON.parse(status.stdout)).toMatchObject({ unique: 2, succeeded: 2 });
  });
});

describe("labsweep with --store postgres://…", () => {
  const postgres = usePostgres();

  // Six tasks, in two phases sharing a dir: each writes its metrics; x 3 fails once, then succeeds.
  const SWEEP = `
command: sh task.sh {x}
retries: 2
backoff: 0s
first:
  output_dir: results
  combinations:
    - x: [1, 2, 3]
second:
  output_dir: results
  combinations:
    - x: [3, 4, 5, 6]
`;
  const TASK = `
if [ "$1" = 3 ] && [ ! -e failed-once ]; then touch failed-once; exit 3; fi
printf '{"score": %s}' "$(($1 * 10))" > "$LABSWEEP_RESULT_FILE"
`;

  function project(): string {
    const dir = tempDir("labsweep-store-");
    writeFile(dir, "sweep.yaml", SWEEP);
    writeFile(dir, "task.sh", TASK);
    return dir;
  }

  const expectCode = (result: CliResult, code: number) =>
    expect(result.code, `exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`).toBe(code);

  async function query<Row>(url: string, sql: string): Promise<Row[]> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      return (await client.query(sql)).rows as Row[];
    } finally {
      await client.end();
    }
  }

  it("runs a sweep: each result row is written exactly once, and status agrees", async () => {
    const dir = project();
    const url = await postgres().createDatabase();
    const sweep = join(dir, "sweep.yaml");
    expectCode(await runCli(["run", sweep, "--store", url, "--slots", "2"], { cwd: dir }), 0);
    // The ledger is in PostgreSQL; the state dir still holds what is per machine (logs, lock).
    expect(existsSync(join(dir, ".labsweep", "ledger.sqlite"))).toBe(false);
    expect(existsSync(join(dir, ".labsweep"))).toBe(true);
    const rows = readCsv(join(dir, "results", "final_results.csv"));
    expect(rows.map((row) => [row.phase, row.x, row.score]).sort()).toEqual([
      ["first", "1", "10"],
      ["first", "2", "20"],
      ["first", "3", "30"],
      ["second", "4", "40"],
      ["second", "5", "50"],
      ["second", "6", "60"],
    ]);
    const tasks = await query<{ state: string; n: string }>(
      url,
      "SELECT state, count(*) AS n FROM tasks GROUP BY state",
    );
    expect(tasks).toEqual([{ state: "succeeded", n: "6" }]);
    const owed = await query<{ n: string }>(url, "SELECT count(*) AS n FROM result_rows WHERE written = 0");
    expect(owed).toEqual([{ n: "0" }]);

    // status through the option and through the variable.
    const status = await runCli(["status", sweep, "--store", url, "--json"], { cwd: dir });
    expectCode(status, 0);
    expect(JSON.parse(status.stdout)).toMatchObject({ unique: 6, succeeded: 6, failed: 0, pending: 0 });
    const viaEnv = await runCli(["status", sweep], { cwd: dir, env: { LABSWEEP_STORE: url } });
    expectCode(viaEnv, 0);
    expect(viaEnv.stdout).toMatch(/^6\/6 done: 6 succeeded, 0 failed/);

    // export and retry read and write the same ledger.
    const exported = await runCli(["export", sweep, "--store", url, "--format", "jsonl"], { cwd: dir });
    expectCode(exported, 0);
    expect(exported.stdout.trim().split("\n")).toHaveLength(6);
    const retried = await runCli(["retry", sweep, "--failed", "--store", url], { cwd: dir });
    expectCode(retried, 0);
    expect(retried.stdout).toMatch(/^0 failed tasks will run again/);

    // Running again resumes: nothing runs twice, nothing is written twice.
    const again = await runCli(["run", sweep, "--slots", "2"], { cwd: dir, env: { LABSWEEP_STORE: url } });
    expectCode(again, 0);
    expect(readCsv(join(dir, "results", "final_results.csv"))).toHaveLength(6);
    const attempts = await query<{ n: string }>(url, "SELECT count(*) AS n FROM attempts");
    expect(attempts).toEqual([{ n: "7" }]);
  });

  it("serves a sweep to an agent: rows written once, status and agents read the same ledger", async () => {
    const dir = project();
    const url = await postgres().createDatabase();
    const sweep = join(dir, "sweep.yaml");
    const served = watch(
      startCli(["serve", sweep, "--port", "0", "--exit-when-done", "--store", url], {
        cwd: dir,
        env: { LABSWEEP_AGENT_TOKEN: "pg-e2e-agent-token-1234" },
      }),
    );
    await served.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
    const address = (/^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(served.output()) as RegExpExecArray)[1] as string;
    const worker = watch(
      startCli(
        [
          "agent",
          "--server",
          address,
          "--token=pg-e2e-agent-token-1234",
          "--state",
          join(dir, "agent"),
          "--slots",
          "2",
        ],
        { cwd: dir },
      ),
    );
    expectCode(await worker.result, 0);
    expectCode(await served.result, 0);
    const rows = readCsv(join(dir, "results", "final_results.csv"));
    expect(rows.map((row) => Number(row.x)).sort()).toEqual([1, 2, 3, 4, 5, 6]);
    const status = await runCli(["status", sweep, "--store", url, "--json"], { cwd: dir });
    expect(JSON.parse(status.stdout)).toMatchObject({ unique: 6, succeeded: 6 });
    const agents = await runCli(["agents", sweep, "--store", url, "--json"], { cwd: dir });
    expectCode(agents, 0);
    expect(JSON.parse(agents.stdout).agents).toHaveLength(1);
  });

  it("migrates on request, once, even when two migrators start together", async () => {
    const url = await postgres().createDatabase();
    const dir = tempDir("labsweep-store-");
    const [one, two] = await Promise.all([
      runCli(["migrate", "--store", url, "--json"], { cwd: dir }),
      runCli(["migrate", "--store", url, "--json"], { cwd: dir }),
    ]);
    expectCode(one as CliResult, 0);
    expectCode(two as CliResult, 0);
    const applied = [one, two].flatMap((result) => JSON.parse(result?.stdout ?? "{}").applied as number[]);
    const versions = readdirVersions();
    expect(applied.sort((a, b) => a - b)).toEqual(versions);
    const again = await runCli(["migrate", "--store", url], { cwd: dir });
    expectCode(again, 0);
    expect(again.stdout).toBe(`${url} is up to date (version ${versions.at(-1)})\n`);
    expect(existsSync(join(dir, ".labsweep"))).toBe(false);
  });

  it("says plainly that an empty database holds no ledger yet", async () => {
    const dir = project();
    const url = await postgres().createDatabase();
    const empty = await runCli(["status", join(dir, "sweep.yaml"), "--store", url], { cwd: dir });
    expectCode(empty, 2);
    expect(empty.stderr).toMatch(/^labsweep: no ledger in this database yet: start one with `labsweep run/);
    expect(empty.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("treats a bad or unreachable store as bad input: exit 2, the option named, no password, nothing written", async () => {
    const dir = project();
    const sweep = join(dir, "sweep.yaml");
    const bad = await runCli(["run", sweep, "--store", "mysql://root:hunter2@db/x"], { cwd: dir });
    expectCode(bad, 2);
    expect(bad.stderr).toMatch(/^labsweep: --store: unknown store mysql:\/\//);
    // A port nothing listens on (the test server's, after a database that does not exist).
    const closed = `postgres://lab:hunter2@127.0.0.1:1/lab`;
    const down = await runCli(["run", sweep, "--store", closed], { cwd: dir });
    expectCode(down, 2);
    expect(down.stderr).toMatch(
      /^labsweep: --store: cannot use the PostgreSQL store postgres:\/\/lab:\*\*\*@127\.0\.0\.1:1\/lab: .*ECONNREFUSED/,
    );
    const missing = `postgres://labsweep:hunter2@127.0.0.1:${postgres().port}/no_such_db`;
    const wrongDb = await runCli(["status", sweep], { cwd: dir, env: { LABSWEEP_STORE: missing } });
    expectCode(wrongDb, 2);
    expect(wrongDb.stderr).toMatch(/^labsweep: LABSWEEP_STORE: .*database "no_such_db" does not exist/);
    for (const result of [bad, down, wrongDb]) {
      expect(result.stderr).not.toContain("hunter2");
      expect(result.stderr.trim().split("\n")).toHaveLength(1);
    }
    expect(existsSync(join(dir, ".labsweep"))).toBe(false);
    expect(existsSync(join(dir, "results"))).toBe(false);
  });
});

function readCsv(path: string): Record<string, string>[] {
  const [header = [], ...rows] = parse(readFileSync(path, "utf8")) as string[][];
  return rows.map((cells) => Object.fromEntries(header.map((name, index) => [name, cells[index] ?? ""])));
}

function readdirVersions(): number[] {
  return readdirSync(new URL("../migrations/postgres/", import.meta.url))
    .filter((name) => /^\d{6}\.sql$/.test(name))
    .map((name) => Number(name.slice(0, 6)))
    .sort((a, b) => a - b);
}
