import { spawn } from "node:child_process";
import { appendFileSync, closeSync, openSync, readSync, rmSync, statSync } from "node:fs";
import { overwritePrivateFile, PRIVATE_FILE_MODE, privateDirWithParents } from "../files/privateFiles.js";
import type { RunPolicy } from "../sweep/types.js";
import { DroppedLaunch, Launcher, sharedLauncher } from "./launcher.js";
import { onPath } from "./onPath.js";
import { oomKillsSince, recentOomKillCount } from "./outOfMemory.js";
import { ProcessGroup, type StopReason, type StopSpec } from "./processGroup.js";

export interface ProcessSpec {
  command: string;
  cwd: string;
  /** The task's environment; with `baseEnv`, the variables laid over that. */
  env: NodeJS.ProcessEnv;
  /**
   * The environment `env` is laid over: the agent's, one object for all its tasks, which the
   * launcher is sent once rather than with every task (a few KB of JSON each way). (Default: none)
   */
  baseEnv?: NodeJS.ProcessEnv;
  logPath: string;
  /**
   * Dirs made (0700, parents too) and then files removed before the log is opened: by the
   * launcher, beside the event loop, where it starts the process. (Default: none)
   */
  dirs?: string[];
  clear?: string[];
  /**
   * Files written (0600 where new; in place, see overwritePrivateFile) after the dirs are made:
   * by the launcher too, where there is one. (Default: none)
   */
  files?: Array<{ path: string; text: string }>;
  /** Kill the process group after this long; null for no limit. */
  timeoutMs: number | null;
  /** Time between the stop signal and SIGKILL on timeouts and stops. (Default: 30 s) */
  graceMs?: number;
  /** The stop signal (a phase's stop_signal). (Default: SIGTERM) */
  stopSignal?: NodeJS.Signals;
  /** The attempt's stop file (LABSWEEP_STOP_FILE), created on every stop. (Default: none) */
  stopPath?: string;
  /** Runs before the launch (writing the task's files) off the event loop; a failure fails the start. */
  prepare?: () => Promise<void>;
  /**
   * Start the moment this process exits (chaining, through the launcher; see `chainable`), not
   * now. The wall time and the timeout count from the real start.
   */
  after?: RunningProcess;
}

export interface ProcessExit {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** Stopped by `terminate` (Ctrl-C twice, cancel): not the task's failure. */
  stopped: boolean;
  /** Why the agent stopped it (the timeout included); null when it ended by itself. */
  stopReason: StopReason | null;
  wallSeconds: number;
  /**
   * For a SIGKILL (or a shell's 137): how far the kernel's OOM kill count rose while it ran
   * (outOfMemory.ts); null when unreadable. Absent for other exits.
   */
  oomKills?: number | null;
}

export interface RunningProcess {
  /** The task's pid and process group id, once it has started (-1 if it could not start). */
  pid: Promise<number>;
  exited: Promise<ProcessExit>;
  /** The stop file, the stop signal to the whole process group, SIGKILL after the grace period. */
  terminate(reason: StopReason): void;
  /** Whether another launch can be chained to start when this one exits (the launcher is used). */
  chainable: boolean;
  /** The launcher's id for this launch, which a chained launch follows (null without launcher). */
  launchId: Promise<number | null>;
  /** A chained process still waiting for the one it follows: start it now. */
  startNow(): void;
  /**
   * A chained process still waiting: take it back. True if it never started (`exited` then
   * resolves as stopped); false if it started first and runs.
   */
  withdraw(): Promise<boolean>;
}

/**
 * LABSWEEP_TOKEN, LABSWEEP_ADMIN_TOKEN, LABSWEEP_VIEWER_TOKEN, LABSWEEP_AGENT_TOKEN and the like,
 * and LABSWEEP_STORE: a `postgres://USER:PASSWORD@…` URL there opens the ledger itself.
 */
const TOKEN_VARIABLE = /^LABSWEEP_(?:.*TOKEN|STORE$)/i;

/**
 * The environment a task gets: the agent's, less every labsweep credential. A task runs whatever
 * a config says; with the agent token it could lease other machines' tasks, with the admin token
 * or the ledger's password queue commands onto them; and a tool that records its environment
 * would carry them off. (A SLURM agent gets its token through its environment.)
 */
export function taskEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const result: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(env)) if (!TOKEN_VARIABLE.test(key)) result[key] = value;
  return result;
}

/** taskEnv of each base environment, worked out once: the same object for every task. */
const cleanBases = new WeakMap<NodeJS.ProcessEnv, NodeJS.ProcessEnv>();

function cleanBase(base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  let clean = cleanBases.get(base);
  if (!clean) {
    clean = taskEnv(base);
    cleanBases.set(base, clean);
  }
  return clean;
}

/** Time a stopped task has to save a checkpoint before SIGKILL, when neither phase nor agent says. */
export const DEFAULT_GRACE_MS = 30_000;

/**
 * How a task of this policy is stopped: its phase's stop_signal, and its stop_grace, which wins
 * over the agent's --grace (`graceMs`): the phase knows how long its checkpoint takes.
 */
export function stopSpec(
  policy: RunPolicy,
  stopPath: string,
  graceMs: number | undefined,
): Pick<ProcessSpec, "graceMs" | "stopSignal" | "stopPath"> {
  const grace = policy.stopGraceMs ?? graceMs;
  return {
    stopPath,
    ...(grace !== undefined && { graceMs: grace }),
    ...(policy.stopSignal && { stopSignal: policy.stopSignal }),
  };
}

/** Looked up on first use: most agents run tasks through the launcher and never need it. */
let hasSetpriv: boolean | null = null;

/**
 * Starts a task's command with `sh -c` as the leader of a new process group, stdout and stderr
 * appended to its log. Where python3 is present the launcher (launcher.py) forks it, so the
 * agent never blocks on a spawn and the task's group is SIGKILLed if the agent dies. Otherwise
 * it is spawned directly under `setpriv --pdeathsig KILL`, so at least the shell dies with the
 * agent, and a restarted agent kills what is left (leftovers.ts).
 */
export function startProcess(spec: ProcessSpec): RunningProcess {
  const stop: StopSpec = { graceMs: spec.graceMs ?? DEFAULT_GRACE_MS, signal: spec.stopSignal };
  if (spec.stopPath) stop.stopPath = spec.stopPath;
  const group = new ProcessGroup(stop, spec.timeoutMs);
  // Counted again from the real start once the pid is known (a chained launch waits first).
  let started = performance.now();
  let stopped = false;
  let dropped = false;
  let oomKillsBefore: number | null = null;
  const launched = launchWhenReady(spec);
  const pidKnown = launched.pid.then(
    (known) => {
      started = performance.now();
      oomKillsBefore = recentOomKillCount();
      group.started(known);
      return known;
    },
    (error: Error) => {
      if (error instanceof DroppedLaunch) dropped = true;
      else appendNote(spec.logPath, `labsweep: could not start the command: ${error.message}`);
      return -1;
    },
  );
  const exited = launched.exit.then(async ({ code: exitCode, signal }) => {
    await pidKnown;
    await group.leaderExited();
    if (dropped) stopped = true;
    const { timedOut, stopReason } = group;
    const wallSeconds = (performance.now() - started) / 1000;
    const oomKills = oomKillsSince(oomKillsBefore, { exitCode, signal });
    return {
      exitCode,
      signal,
      timedOut,
      stopped,
      stopReason,
      wallSeconds,
      ...(oomKills !== undefined && { oomKills }),
    };
  });
  const launchId = launched.id;
  return {
    pid: pidKnown,
    exited,
    terminate(reason) {
      if (group.leaderGone) return;
      stopped = true;
      group.terminate(reason);
    },
    chainable: Launcher.available(),
    launchId,
    startNow() {
      launchId
        .then((id) => {
          if (id !== null) sharedLauncher().release(id);
        })
        // A launcher gone meanwhile has settled the task already (its 'exit').
        .catch(() => undefined);
    },
    async withdraw() {
      const id = await launchId;
      return id !== null && (await sharedLauncher().drop(id));
    },
  };
}

/**
 * Launches once the task's files are written and the launch it follows (`spec.after`) is known to
 * the launcher; at once when there is neither.
 */
function launchWhenReady(spec: ProcessSpec): Launched {
  const after = spec.after;
  const launch = (): Launched | Promise<Launched> => {
    if (!Launcher.available()) return viaSpawn(spec);
    if (!after) return viaLauncher(spec);
    // A predecessor that never reached the launcher (its files could not be written) is chained
    // to nothing there: start once it is over, as the launcher would have.
    return after.launchId.then((id) =>
      id === null ? after.exited.then(() => viaLauncher(spec)) : viaLauncher(spec, id),
    );
  };
  if (spec.prepare) return afterPreparing(spec.prepare(), launch);
  return after ? afterPreparing(Promise.resolve(), launch) : (launch() as Launched);
}

type Exit = { code: number | null; signal: NodeJS.Signals | null };
/** A launch in progress; `id` is the launcher's (null when spawned directly or not launched). */
type Launched = { id: Promise<number | null>; pid: Promise<number>; exit: Promise<Exit> };

/** Launches once `prepared` settles; if it fails, the task fails to start (exit 127). */
function afterPreparing(prepared: Promise<void>, launch: () => Launched | Promise<Launched>): Launched {
  const launched = prepared.then(launch);
  return {
    id: launched.then(
      (started) => started.id,
      () => null,
    ),
    pid: launched.then((started) => started.pid),
    exit: launched.then(
      (started) => started.exit,
      () => ({ code: 127, signal: null }),
    ),
  };
}

function viaLauncher(spec: ProcessSpec, after?: number): Launched {
  const launched = sharedLauncher().launch(
    {
      command: spec.command,
      cwd: spec.cwd,
      env: taskEnv(spec.env),
      ...(spec.baseEnv && { baseEnv: cleanBase(spec.baseEnv) }),
      logPath: spec.logPath,
      dirs: spec.dirs ?? [],
      clear: spec.clear ?? [],
      files: spec.files ?? [],
    },
    after,
  );
  return { ...launched, id: Promise.resolve(launched.id) };
}

function viaSpawn(spec: ProcessSpec): Launched {
  for (const dir of spec.dirs ?? []) privateDirWithParents(dir);
  for (const path of spec.clear ?? []) rmSync(path, { force: true });
  for (const file of spec.files ?? []) overwritePrivateFile(file.path, file.text);
  const log = openSync(spec.logPath, "a", PRIVATE_FILE_MODE);
  const argv = ["/bin/sh", "-c", spec.command];
  hasSetpriv ??= onPath("setpriv");
  const [file, ...args] = hasSetpriv ? ["setpriv", "--pdeathsig", "KILL", "--", ...argv] : argv;
  let child: ReturnType<typeof spawn>;
  try {
    child = spawn(file as string, args, {
      cwd: spec.cwd,
      env: taskEnv({ ...spec.baseEnv, ...spec.env }),
      detached: true,
      stdio: ["ignore", log, log],
    });
  } finally {
    closeSync(log);
  }
  let failure: Error | null = null;
  const exit = new Promise<Exit>((resolve) => {
    child.once("error", (error) => {
      failure = error;
      resolve({ code: 127, signal: null });
    });
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
  const pid =
    child.pid === undefined
      ? exit.then(() => Promise.reject(failure ?? new Error("could not spawn /bin/sh")))
      : Promise.resolve(child.pid);
  return { id: Promise.resolve(null), pid, exit };
}

/** Appends one line of labsweep's own to a task's log. */
export function appendNote(path: string, line: string): void {
  try {
    appendFileSync(path, `${line}\n`, { mode: PRIVATE_FILE_MODE });
  } catch (error) {
    // The log's dir could not be made (the same failure being noted): the note has nowhere to go.
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
}

/** The last `count` lines of a log, for failure reports. Reads at most the last 64 KiB. */
export function logTail(path: string, count = 20): string {
  try {
    const size = statSync(path).size;
    const fd = openSync(path, "r");
    try {
      const length = Math.min(size, 64 * 1024);
      const buffer = Buffer.alloc(length);
      readSync(fd, buffer, 0, length, size - length);
      const lines = buffer.toString("utf8").split("\n");
      if (lines.at(-1) === "") lines.pop();
      return lines.slice(-count).join("\n");
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return "";
    throw error;
  }
}
