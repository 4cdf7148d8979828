/**
 * A command loads only what it uses (issue 14): `--help` pays for no SQL driver, HTTP server or
 * schema compiler, and `status` for no HTTP server — every researcher's `status` and `--help`
 * would otherwise wait for all of labsweep to load.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { REPO_ROOT, tempDir, writeFile } from "./helpers/cli.js";

function loadedBy(args: string[], cwd: string): string[] {
  const file = join(tempDir(), "loaded.txt");
  const run = spawnSync(
    process.execPath,
    [
      "--import",
      join(REPO_ROOT, "test/helpers/loadedModules.mjs"),
      join(REPO_ROOT, "bin/labsweep.js"),
      ...args,
    ],
    { cwd, env: { ...process.env, LABSWEEP_TEST_LOADED_MODULES: file }, encoding: "utf8" },
  );
  expect(run.status, run.stderr).toBe(0);
  const urls = readFileSync(file, "utf8").trim().split("\n");
  // The CLI runs from its bundle (scripts/bundle.mjs), not module by module from dist/.
  expect(urls.filter((url) => url.includes("/dist/") && !url.includes("/dist/bundle/"))).toEqual([]);
  return unbundled(urls);
}

/** The modules (dist/… and node_modules/… URLs) inside the CLI bundle's chunks among `urls`. */
function unbundled(urls: string[]): string[] {
  const meta = JSON.parse(readFileSync(join(REPO_ROOT, "dist/bundle/meta.json"), "utf8")) as {
    outputs: Record<string, { inputs: Record<string, unknown> }>;
  };
  return urls.flatMap((url) => {
    const chunk = /\/(dist\/bundle\/[^/]+\.js)$/.exec(url)?.[1];
    if (chunk === undefined) return [url];
    const inputs = meta.outputs[chunk]?.inputs;
    if (inputs === undefined) throw new Error(`${chunk} is not in dist/bundle/meta.json`);
    return Object.keys(inputs).map((input) => pathToFileURL(join(REPO_ROOT, input)).href);
  });
}

const packageOf = (urls: string[], name: string) =>
  urls.filter((url) => url.includes(`/node_modules/${name}/`));

describe("lazy loading", () => {
  it("labsweep --help loads no SQL driver, HTTP server or schema compiler", () => {
    const loaded = loadedBy(["--help"], tempDir());
    expect(loaded.some((url) => url.endsWith("/dist/cli/main.js"))).toBe(true);
    for (const name of ["better-sqlite3", "pg", "fastify", "ajv", "zod", "yaml"])
      expect(packageOf(loaded, name)).toEqual([]);
    expect(loaded.filter((url) => /\/dist\/(coordinator|agent|dashboard)\//.test(url))).toEqual([]);
    // The ledger's one module here is the name of --store's environment variable.
    expect(loaded.filter((url) => url.includes("/dist/ledger/"))).toEqual([
      expect.stringMatching(/\/dist\/ledger\/storeEnv\.js$/),
    ]);
  });

  it("labsweep status reads the ledger without loading the HTTP server or the agent", () => {
    const dir = tempDir();
    const config = writeFile(dir, "sweep.yaml", 'command: "true"\np:\n  combinations:\n    - i: [1, 2]\n');
    // run --no-dashboard runs the tasks without loading the HTTP server.
    const run = loadedBy(["run", config, "--no-dashboard"], dir);
    expect(run.some((url) => url.endsWith("/dist/agent/agent.js"))).toBe(true);
    expect(packageOf(run, "fastify")).toEqual([]);
    // Its output is piped here: no terminal redraw, so none of log-update's text-width tables.
    for (const name of ["log-update", "string-width"]) expect(packageOf(run, name)).toEqual([]);
    // Nor with its dashboard, when no request came: the first request loads it (listenLazily).
    const watched = loadedBy(["run", config], dir);
    expect(watched.some((url) => url.endsWith("/dist/http/lazyListener.js"))).toBe(true);
    expect(packageOf(watched, "fastify")).toEqual([]);
    expect(watched.filter((url) => url.includes("/dist/dashboard/"))).toEqual([]);
    const loaded = loadedBy(["status", config], dir);
    expect(loaded.some((url) => url.endsWith("/dist/ledger/sqliteDriver.js"))).toBe(true);
    expect(packageOf(loaded, "better-sqlite3").length).toBeGreaterThan(0);
    // Its addon is named, not searched for through `bindings`.
    expect(packageOf(loaded, "bindings")).toEqual([]);
    // A SQLite ledger pays nothing for PostgreSQL's driver.
    expect(packageOf(loaded, "pg")).toEqual([]);
    expect(packageOf(loaded, "fastify")).toEqual([]);
    expect(loaded.filter((url) => /\/dist\/(agent|dashboard)\//.test(url))).toEqual([]);
    // Given a config, it only finds the state dir beside it: no YAML parser or config schema.
    for (const name of ["yaml", "zod"]) expect(packageOf(loaded, name)).toEqual([]);
  });

  it("labsweep results reads the ledger without loading the HTTP server or the agent", () => {
    const dir = tempDir();
    const config = writeFile(dir, "sweep.yaml", 'command: "true"\np:\n  combinations:\n    - i: [1, 2]\n');
    loadedBy(["run", config, "--no-dashboard"], dir);
    const loaded = loadedBy(["results", config], dir);
    expect(loaded.some((url) => url.endsWith("/dist/results/summary.js"))).toBe(true);
    expect(packageOf(loaded, "fastify")).toEqual([]);
    expect(packageOf(loaded, "pg")).toEqual([]);
    expect(loaded.filter((url) => /\/dist\/(agent|dashboard|coordinator\/http)\//.test(url))).toEqual([]);
  });
});
