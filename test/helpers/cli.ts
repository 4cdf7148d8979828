import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach } from "vitest";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
/** The built CLI: `npm test` builds first; run `npm run build` before vitest by hand. */
export const CLI = join(REPO_ROOT, "bin", "labsweep.js");

/** Laid over a child's environment: no token or server from the developer's shell leaks in. */
export const CLEAN_ENV = {
  LABSWEEP_AGENT_TOKEN: "",
  LABSWEEP_VIEWER_TOKEN: "",
  LABSWEEP_ADMIN_TOKEN: "",
  LABSWEEP_TOKEN: "",
  LABSWEEP_SERVER: "",
};

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `labsweep ARGS…` to completion. */
export function runCli(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<CliResult> {
  const child = startCli(args, options);
  return collect(child, options.timeoutMs ?? 60_000);
}

/** Starts `labsweep ARGS…` and returns the child, for tests that signal or kill it. */
export function startCli(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): ChildProcess {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: options.cwd ?? REPO_ROOT,
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  liveChildren.add(child);
  child.once("exit", () => liveChildren.delete(child));
  return child;
}

export function collect(child: ChildProcess, timeoutMs = 60_000): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(`labsweep did not finish within ${timeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`),
      );
    }, timeoutMs);
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr });
    });
  });
}

/** A running labsweep process whose combined output a test can wait on. */
export interface Watched {
  child: ChildProcess;
  result: Promise<CliResult>;
  output(): string;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
}

/** Collects a child's stdout and stderr together, for tests that wait for a line. */
export function watch(child: ChildProcess, timeoutMs = 90_000): Watched {
  let text = "";
  const append = (chunk: Buffer): void => {
    text += chunk.toString();
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  const result = collect(child, timeoutMs);
  let ended = false;
  void result.then(() => {
    ended = true;
  });
  return {
    child,
    result,
    output: () => text,
    async waitFor(pattern, wait = 20_000) {
      const deadline = Date.now() + wait;
      while (!pattern.test(text)) {
        if (ended || Date.now() > deadline)
          throw new Error(`${ended ? "ended" : "timed out"} waiting for ${pattern}:\n${text}`);
        await new Promise((resolveWait) => setTimeout(resolveWait, 25));
      }
    },
  };
}

const liveChildren = new Set<ChildProcess>();
const tempDirs: string[] = [];

/** A fresh temp dir, removed after the test. */
export function tempDir(prefix = "labsweep-test-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/** Writes a file (creating nothing else) and returns its path. */
export function writeFile(dir: string, name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

// A test that leaves a labsweep process behind fails, and the process is killed.
afterEach(() => {
  const leaked = [...liveChildren];
  for (const child of leaked) child.kill("SIGKILL");
  liveChildren.clear();
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  if (leaked.length > 0) throw new Error(`test left ${leaked.length} labsweep process(es) running`);
});
