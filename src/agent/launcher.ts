import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { launcherPython } from "./onPath.js";

/** The same file from src/agent (tests) and dist/agent (the built CLI). */
const LAUNCHER_SCRIPT = fileURLToPath(new URL("../../src/agent/launcher.py", import.meta.url));

export interface LaunchSpec {
  command: string;
  cwd: string;
  /** The task's environment; with `baseEnv`, the variables laid over that. */
  env: NodeJS.ProcessEnv;
  /**
   * The environment `env` is laid over, sent to the launcher the first time it is seen (by
   * identity: pass the same object for every task). (Default: none)
   */
  baseEnv?: NodeJS.ProcessEnv;
  logPath: string;
  /** Made (0700, parents too), then `clear`'s files removed, before the log is opened. (Default: none) */
  dirs?: string[];
  clear?: string[];
  /** Written (0600 where new, in place) after the dirs, before the log is opened. (Default: none) */
  files?: Array<{ path: string; text: string }>;
}

export interface Launched {
  /** This launch's id, which a chained launch names as the task it follows. */
  id: number;
  /** The task's pid, which is also its process group id. */
  pid: Promise<number>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Thrown (as the pid's rejection) for a chained launch taken back before it started. */
export class DroppedLaunch extends Error {}

interface Pending {
  /** Known once the launcher said the task started. */
  pid?: number;
  started: (pid: number) => void;
  failed: (error: Error) => void;
  exited: (exit: { code: number | null; signal: NodeJS.Signals | null }) => void;
  /** Set by `drop`: told whether the launch was taken back (true) or had started (false). */
  dropAnswer?: (dropped: boolean) => void;
}

/**
 * Starts task processes through `launcher.py`, a small helper that spawns them so the agent's
 * event loop never blocks on a spawn, and that SIGKILLs every task's process group when the
 * agent dies (its stdin closes); should the launcher die instead, this kills the groups. One
 * launcher per agent process, started on first use.
 */
export class Launcher {
  private child: ChildProcess | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  /** The base environments each launcher process has been sent, by id (a restarted one knows none). */
  private readonly bases = new WeakMap<ChildProcess, Map<NodeJS.ProcessEnv, number>>();

  /** Whether python3 is here to run the launcher; otherwise the caller spawns directly. */
  static available(): boolean {
    return python() !== null;
  }

  /**
   * Starts a task; with `after`, the launcher starts it the moment that launch's process exits
   * (at once if it has exited already), without waiting for the agent.
   */
  launch(spec: LaunchSpec, after?: number): Launched {
    const id = this.nextId++;
    let started!: (pid: number) => void;
    let failed!: (error: Error) => void;
    let exited!: Pending["exited"];
    const pid = new Promise<number>((resolve, reject) => {
      started = resolve;
      failed = reject;
    });
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      exited = resolve;
    });
    this.pending.set(id, { started, failed, exited });
    const child = this.ensureRunning();
    this.holdLoop(true);
    const base = spec.baseEnv && this.baseId(child, spec.baseEnv);
    const request = {
      id,
      cmd: spec.command,
      cwd: spec.cwd,
      env: definedOnly(spec.env),
      ...(base !== undefined && { base }),
      log: spec.logPath,
      ...(spec.dirs?.length ? { dirs: spec.dirs } : {}),
      ...(spec.clear?.length ? { clear: spec.clear } : {}),
      ...(spec.files?.length ? { files: spec.files.map((file) => [file.path, file.text]) } : {}),
      ...(after === undefined ? {} : { after }),
    };
    this.send(child, request);
    return { id, pid, exit };
  }

  /** The id `child` knows `env` by, sending it first if it does not know it yet. */
  private baseId(child: ChildProcess, env: NodeJS.ProcessEnv): number {
    let bases = this.bases.get(child);
    if (!bases) {
      bases = new Map();
      this.bases.set(child, bases);
    }
    let id = bases.get(env);
    if (id === undefined) {
      id = bases.size + 1;
      bases.set(env, id);
      this.send(child, { base: id, env: definedOnly(env) });
    }
    return id;
  }

  /**
   * Starts the launcher now, ahead of the first task, so python3's start (slow behind a version
   * manager's shim: half a second under pyenv) overlaps the caller's own work, such as opening
   * and syncing the ledger. It holds the process alive only once a task runs.
   */
  warm(): void {
    if (this.child || !Launcher.available()) return;
    this.ensureRunning();
    this.holdLoop(false);
  }

  /** Starts a chained launch now if it is still waiting for the task it follows. */
  release(id: number): void {
    if (this.pending.get(id)?.pid === undefined && this.child) this.send(this.child, { release: id });
  }

  /**
   * Takes back a chained launch still waiting for the task it follows. True if it never started
   * (its pid then rejects with DroppedLaunch); false if it started (or failed to) first.
   */
  drop(id: number): Promise<boolean> {
    const entry = this.pending.get(id);
    if (!entry || entry.pid !== undefined || !this.child) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      entry.dropAnswer = resolve;
      if (this.child) this.send(this.child, { drop: id });
    });
  }

  /**
   * The agent is done with this process group: the launcher SIGKILLs what is left of it (unless
   * a new task of its own has that pid by now) and forgets it. False when no launcher runs to do
   * it: the caller kills the group itself.
   */
  forget(pid: number): boolean {
    if (!this.child?.stdin?.writable) return false;
    this.send(this.child, { forget: pid });
    return true;
  }

  /**
   * Writes a request to the launcher. Requests made in one turn of the event loop (a finished
   * task's forget, its successor's start, a release) go out in one write: a pipe write is a
   * system call on the agent's thread, several per task otherwise.
   */
  private send(child: ChildProcess, request: object): void {
    const stdin = child.stdin;
    if (!stdin) return;
    if (stdin.writableCorked === 0) {
      stdin.cork();
      process.nextTick(() => stdin.uncork());
    }
    stdin.write(`${JSON.stringify(request)}\n`);
  }

  /** Stops the launcher once no task is left; tasks still running are the agent's to stop. */
  close(): void {
    this.child?.stdin?.end();
    this.child = null;
  }

  private ensureRunning(): ChildProcess {
    if (this.child) return this.child;
    const child = spawn(python() ?? "python3", [LAUNCHER_SCRIPT], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) =>
      this.onMessage(line),
    );
    // A launcher that died (killed, out of memory) fails a write to it with EPIPE: unheard, that
    // would end the agent. Its 'exit' below settles its tasks; one that could not start at all
    // has no 'exit', so its spawn error does.
    child.stdin?.on("error", () => undefined);
    child.on("error", (error) => {
      if (child.pid === undefined) gone(`the task launcher could not start: ${error.message}`);
    });
    child.once("exit", (code, signal) => gone(`the task launcher exited (code ${code}, signal ${signal})`));
    const gone = (why: string): void => {
      if (this.child === child) this.child = null;
      // Its tasks must not outlive it unwatched: kill their groups, and report them as killed so
      // they are requeued.
      const error = new Error(why);
      for (const [id, entry] of this.pending) {
        if (entry.pid !== undefined) killGroup(entry.pid);
        entry.dropAnswer?.(false);
        entry.failed(error);
        entry.exited({ code: null, signal: "SIGKILL" });
        this.pending.delete(id);
      }
    };
    this.child = child;
    return child;
  }

  private onMessage(line: string): void {
    const message = JSON.parse(line) as {
      ev: "started" | "exit" | "error" | "dropped";
      id: number;
      pid?: number;
      code?: number | null;
      signal?: NodeJS.Signals | null;
      message?: string;
    };
    const entry = this.pending.get(message.id);
    if (!entry) return;
    if (message.ev === "started") {
      entry.pid = message.pid as number;
      entry.started(entry.pid);
      entry.dropAnswer?.(false);
    } else if (message.ev === "dropped") {
      entry.dropAnswer?.(true);
      entry.failed(new DroppedLaunch("taken back before it started"));
      entry.exited({ code: null, signal: null });
      this.pending.delete(message.id);
    } else if (message.ev === "error") {
      entry.dropAnswer?.(false);
      entry.failed(new Error(message.message));
      entry.exited({ code: 127, signal: null });
      this.pending.delete(message.id);
    } else {
      entry.exited({ code: message.code ?? null, signal: message.signal ?? null });
      this.pending.delete(message.id);
    }
    if (this.pending.size === 0) this.holdLoop(false);
  }

  /** The launcher keeps the agent's process alive only while a task runs. */
  private holdLoop(hold: boolean): void {
    const child = this.child;
    if (!child) return;
    const stdout = child.stdout as unknown as { ref?: () => void; unref?: () => void };
    if (hold) {
      child.ref();
      stdout.ref?.();
    } else {
      child.unref();
      stdout.unref?.();
    }
  }
}

let interpreter: string | null | undefined;
let shared: Launcher | null = null;

/** The python3 that runs the launcher (onPath.ts's launcherPython), looked up once; null: none. */
function python(): string | null {
  if (interpreter === undefined) interpreter = process.platform === "linux" ? launcherPython() : null;
  return interpreter;
}

/** The process-wide launcher. */
export function sharedLauncher(): Launcher {
  shared ??= new Launcher();
  return shared;
}

function definedOnly(env: NodeJS.ProcessEnv): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) if (value !== undefined) result[key] = value;
  return result;
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // Gone already.
  }
}
