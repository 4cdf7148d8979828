import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../src/ledger/db.js";
import { migrate } from "../src/ledger/migrate.js";
import { LEDGER_FILE, openLedger } from "../src/ledger/openLedger.js";
import { openSqliteDb } from "../src/ledger/sqliteDb.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const built = (name: string) => pathToFileURL(join(root, "dist", "ledger", name)).href;
/** Every migration's version, from the numbered files. */
const VERSIONS = readdirSync(join(root, "migrations", "sqlite"))
  .filter((name) => /^\d{6}\.sql$/.test(name))
  .map((name) => Number(name.slice(0, 6)))
  .sort((a, b) => a - b);

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

function freshDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "labsweep-migrate-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function open(path: string): Db {
  const db = openSqliteDb(path);
  cleanup.push(() => db.close());
  return db;
}

async function versions(db: Db): Promise<number[]> {
  const rows = await db.all<{ version: number }>("SELECT version FROM labsweep_migrations ORDER BY version");
  return rows.map((row) => row.version);
}

async function tableNames(db: Db): Promise<string[]> {
  const rows = await db.all<{ name: string }>(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
  );
  return rows.map((row) => row.name);
}

/**
 * A child process that imports the built ledger modules, says "ready", and on "go" (so both
 * children race for real, not one after the other's start-up) opens the file and migrates it.
 * Prints the applied versions.
 */
const CHILD = `
const file = process.argv[1];
const { openSqliteDb } = await import(${JSON.stringify(built("sqliteDb.js"))});
const { migrate } = await import(${JSON.stringify(built("migrate.js"))});
process.stdin.once("data", async () => {
  const db = openSqliteDb(file);
  const applied = await migrate(db);
  await db.close();
  process.stdout.write(JSON.stringify(applied));
  process.stdin.destroy();
});
process.stderr.write("ready\\n");
`;

interface Child {
  ready: Promise<void>;
  go: () => void;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

function startChild(file: string): Child {
  const child = spawn(process.execPath, ["--input-type=module", "-e", CHILD, file], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  let onReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => {
    onReady = resolve;
  });
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
    if (stderr.startsWith("ready\n")) {
      stderr = stderr.slice("ready\n".length);
      onReady();
    }
  });
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => {
      onReady(); // a child that died before "ready" must not hang the test
      resolve({ code, stdout, stderr });
    });
  });
  return { ready, go: () => child.stdin.write("go\n"), done };
}

describe("migrate", () => {
  beforeAll(() => {
    if (!existsSync(fileURLToPath(built("migrate.js"))) || !existsSync(fileURLToPath(built("sqliteDb.js"))))
      throw new Error("dist/ledger is missing: run `npm run build` first");
  });

  it("applies every migration once on a fresh file and records its version", async () => {
    const db = open(join(freshDir(), LEDGER_FILE));
    expect(await migrate(db)).toEqual(VERSIONS);
    expect(await versions(db)).toEqual(VERSIONS);
    expect(await tableNames(db)).toEqual([
      "agents",
      "artifacts",
      "attempts",
      "events",
      "labsweep_migrations",
      "metric_points",
      "metric_series",
      "notifications",
      "phases",
      "placements",
      "result_dir_errors",
      "result_files",
      "result_rows",
      "snapshots",
      "tasks",
    ]);
  });

  it("applies nothing when run again, on the same or a new connection", async () => {
    const path = join(freshDir(), LEDGER_FILE);
    const first = open(path);
    expect(await migrate(first)).toEqual(VERSIONS);
    expect(await migrate(first)).toEqual([]);
    const second = open(path);
    expect(await migrate(second)).toEqual([]);
    expect(await versions(second)).toEqual(VERSIONS);
  });

  it("only reads a ledger at the newest version: a writer holding the ledger does not hold it up", async () => {
    const path = join(freshDir(), LEDGER_FILE);
    expect(await migrate(open(path))).toEqual(VERSIONS);
    // Another process in the middle of a write (a running coordinator's transaction).
    const writer = open(path);
    await writer.run("BEGIN IMMEDIATE");
    cleanup.push(() => writer.run("ROLLBACK").then(() => undefined));
    const started = Date.now();
    expect(await migrate(open(path))).toEqual([]);
    // A write transaction would have waited out the 10 s busy timeout, then failed.
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it("openLedger creates the state dir, migrates, and reopens without migrating again", async () => {
    const stateDir = join(freshDir(), "nested", "state");
    const db = await openLedger(stateDir);
    cleanup.push(() => db.close());
    expect(existsSync(join(stateDir, LEDGER_FILE))).toBe(true);
    await db.run("INSERT INTO events (at, kind) VALUES (1, 'marker')");
    const again = await openLedger(stateDir);
    cleanup.push(() => again.close());
    expect(await versions(again)).toEqual(VERSIONS);
    expect(await again.all("SELECT kind FROM events")).toEqual([{ kind: "marker" }]);
  });

  it("two processes migrating the same fresh file at once both succeed; the version is recorded once", async () => {
    const path = join(freshDir(), LEDGER_FILE);
    const children = [startChild(path), startChild(path)];
    await Promise.all(children.map((child) => child.ready));
    for (const child of children) child.go();
    const results = await Promise.all(children.map((child) => child.done));
    for (const result of results) expect(result, result.stderr).toMatchObject({ code: 0, stderr: "" });
    const applied = results.map((result) => JSON.parse(result.stdout) as number[]);
    // Each migration was applied by exactly one of them; the other found it recorded.
    expect(applied.flat().sort((a, b) => a - b)).toEqual(VERSIONS);
    const db = open(path);
    expect(await versions(db)).toEqual(VERSIONS);
    expect(await tableNames(db)).toContain("tasks");
  });
});
