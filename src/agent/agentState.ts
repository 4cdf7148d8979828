import { randomUUID } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join, resolve } from "node:path";
import { ensurePrivateDir, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from "../files/privateFiles.js";
import { tryExclusiveLock } from "../files/processLock.js";
import { killLeftovers, killTasksOf } from "./leftovers.js";

/** A state dir another live agent holds. */
export class StateDirInUseError extends Error {
  override readonly name = "StateDirInUseError";
  constructor(
    readonly stateDir: string,
    readonly owner: number | null,
  ) {
    super(
      `another labsweep agent${owner ? ` (pid ${owner})` : ""} uses the state dir ${stateDir}; give each agent on a machine its own --state DIR`,
    );
  }
}

export interface AgentState {
  stateDir: string;
  /** Stable across restarts: kept in `<state>/agent.json`. */
  agentId: string;
  release(): void;
}

/** The agent's kernel lock on its state dir (see tryExclusiveLock). */
const LOCK_FILE = "agent.run.lock";
/** The holder's pid, written while holding the lock, for the message a second agent gets. */
const PID_FILE = "agent.lock";

/**
 * Takes an agent's state dir (one agent per dir) and reads, or on first use creates, the agent's
 * id. A kernel lock, not a pid file judged stale: two agents starting at once cannot both take
 * it, one killed by SIGKILL frees it, and a dead owner's pid reused by another process after a
 * reboot does not keep the dir taken for ever.
 */
export function openAgentState(stateDir: string): AgentState {
  const dir = resolve(stateDir);
  // Task logs, results and the outbox live here: the owner's alone (see privateFiles.ts).
  ensurePrivateDir(dir);
  const lock = tryExclusiveLock(join(dir, LOCK_FILE));
  const pidPath = join(dir, PID_FILE);
  if (!lock) throw new StateDirInUseError(dir, ownerPid(pidPath));
  const release = (): void => {
    // The pid file goes first, while the lock still says it is ours to remove.
    rmSync(pidPath, { force: true });
    lock.release();
  };
  try {
    // Overwrites a stale one (a killed holder's, or an older labsweep's pid lock).
    rmSync(pidPath, { force: true });
    writeFileSync(pidPath, `${process.pid}\n`, { mode: PRIVATE_FILE_MODE });
    return { stateDir: dir, agentId: agentIdOf(dir), release };
  } catch (error) {
    release();
    throw error;
  }
}

/** The pid in the lock holder's pid file; null while it has not written it yet. */
function ownerPid(path: string): number | null {
  try {
    const pid = Number(readFileSync(path, "utf8").trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}

function agentIdOf(dir: string): string {
  const path = join(dir, "agent.json");
  try {
    const stored = JSON.parse(readFileSync(path, "utf8")) as { agentId?: unknown };
    if (typeof stored.agentId === "string" && stored.agentId !== "") return stored.agentId;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT" && !(error instanceof SyntaxError)) throw error;
  }
  const agentId = randomUUID();
  writeWhole(path, `${JSON.stringify({ agentId }, null, 2)}\n`, true);
  return agentId;
}

/** What `<state>/running/<attemptId>.json` says about a task this agent started. */
export interface RunningRecord {
  attemptId: number;
  pid: number;
  logPath: string;
  startedAt: number;
}

/**
 * Notes a started task's process group, so the next incarnation can kill what it leaves. Whole
 * (temp file and rename) but not fsynced: it must survive the agent's death, not the machine's,
 * as no process outlives a power loss; and an fsync here, on the event loop, held up every
 * task start by milliseconds.
 */
export function recordRunning(stateDir: string, record: RunningRecord): void {
  const dir = join(stateDir, "running");
  const write = (): void =>
    writeWhole(join(dir, `${record.attemptId}.json`), `${JSON.stringify(record)}\n`, false);
  // The dir is made once per agent, not per task (a syscall costs up to a millisecond on a busy
  // machine), and again should it have gone.
  try {
    write();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    write();
  }
}

export function forgetRunning(stateDir: string, attemptId: number): void {
  rmSync(join(stateDir, "running", `${attemptId}.json`), { force: true });
}

/**
 * Kills what a previous incarnation of this agent left running (it died by SIGKILL or power
 * loss): the process groups it recorded, checked by their attempt marker so a recycled pid is
 * never hit, and any other process carrying this state dir's marker. Call while holding the
 * state dir, before any task starts. Returns the attempts it had recorded and how many processes
 * were killed.
 */
export function killPreviousTasks(stateDir: string): { attempts: number[]; killed: number } {
  const dir = join(stateDir, "running");
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const attempts: number[] = [];
  let killed = 0;
  for (const name of names) {
    const path = join(dir, name);
    try {
      const record = JSON.parse(readFileSync(path, "utf8")) as Partial<RunningRecord>;
      if (typeof record.pid === "number" && typeof record.attemptId === "number") {
        killed += killLeftovers(record.pid, record.attemptId);
        attempts.push(record.attemptId);
      }
    } catch (error) {
      if (!(error instanceof SyntaxError)) throw error; // a torn write: nothing to go on
    }
    rmSync(path, { force: true });
  }
  killed += killTasksOf(resolve(stateDir));
  return { attempts, killed };
}

/** Temp file, fsync if `durably`, rename: readers see the old content or the new, never half. */
function writeWhole(path: string, text: string, durably: boolean): void {
  const temp = `${path}.${process.pid}.tmp`;
  const fd = openSync(temp, "w", PRIVATE_FILE_MODE);
  try {
    writeSync(fd, text);
    if (durably) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, path);
}
