import { homedir } from "node:os";
import { join } from "node:path";
import { StateDirInUseError } from "../agent/agentState.js";
import { UnauthorizedError } from "../agent/httpClient.js";
import { sharedLauncher } from "../agent/launcher.js";
import { RemoteAgent, type RemoteAgentOptions } from "../agent/remoteAgent.js";
import { type Logger, logger, type Warn } from "../log/logger.js";
import { EXIT } from "./exitCodes.js";
import { Interrupts } from "./interrupts.js";

/** How many default state dirs (`~/.labsweep/agents/1`, `2`, …) one host may use. */
const MAX_DEFAULT_STATE_DIRS = 64;

export interface AgentRunOptions extends Omit<RemoteAgentOptions, "stateDir"> {
  /** This agent's own state dir. (Default: the first free `~/.labsweep/agents/N`) */
  stateDir?: string;
  /** Where the agent's verdicts and Ctrl-C notices go, one line each. (Default: stderr) */
  say?: Warn;
}

/**
 * `labsweep agent`'s composition root: runs a RemoteAgent until the coordinator has nothing left
 * for this machine, with the two-stage Ctrl-C, in the first default state dir no other agent on
 * this host holds. Returns the exit code: 0 done, or stopped for its SLURM job's time limit
 * (SIGUSR2: its tasks went back to the queue, which is all an agent can do then); 2 a rejected
 * token or a state dir in use; 130 stopped by Ctrl-C or SIGTERM; 1 anything else (an error thrown
 * is 1 too).
 */
export async function runAgent(options: AgentRunOptions): Promise<number> {
  const log = logger("agent", options.say);
  const interrupts = new Interrupts({
    stopping: () => log.info("stopping — no new tasks; running ones finish (Ctrl-C again to terminate them)"),
    terminating: () => log.info("terminating running tasks (SIGTERM, then SIGKILL after the grace period)"),
    timeLimit: () =>
      log.info(
        "the SLURM job's time limit is near (SIGUSR2): no new tasks; stopping running ones (SIGTERM, then SIGKILL after the grace period)",
      ),
  });
  // Ready before the first lease comes back (see Launcher.warm).
  sharedLauncher().warm();
  try {
    for (let candidate = 1; ; candidate++) {
      const agent = new RemoteAgent({ ...options, stateDir: options.stateDir ?? defaultStateDir(candidate) });
      interrupts.attach({
        stopLeasing: () => agent.stopLeasing(),
        terminateRunning: (why) => agent.terminate(why),
      });
      try {
        return exitOf(await agent.run(), log, interrupts.reachedTimeLimit);
      } catch (error) {
        // Another agent on this host has this default dir: take the next one.
        if (error instanceof StateDirInUseError && !options.stateDir && candidate < MAX_DEFAULT_STATE_DIRS)
          continue;
        if (!(error instanceof StateDirInUseError || error instanceof UnauthorizedError)) throw error;
        logger("labsweep", options.say).warn(error.message);
        return EXIT.badInput;
      }
    }
  } finally {
    interrupts.dispose();
  }
}

function exitOf(exit: Awaited<ReturnType<RemoteAgent["run"]>>, log: Logger, timeLimit: boolean): number {
  if (exit.kind === "stopped" && timeLimit) {
    log.info(
      "stopped for the SLURM job's time limit: its tasks went back to the queue without a retry spent, for another agent (labsweep slurm submits more)",
    );
    return EXIT.ok;
  }
  if (exit.kind === "stopped") {
    log.info("stopped");
    return EXIT.interrupted;
  }
  if (exit.kind === "unreachable") return EXIT.failed;
  // Said by the agent already (--idle-exit): leaving idle is a clean end, its allocation released.
  if (exit.kind === "idle") return EXIT.ok;
  log.info("the coordinator has nothing left for this machine; exiting");
  return EXIT.ok;
}

/** `~/.labsweep/agents/N`: each agent on a host needs its own outbox and running files. */
function defaultStateDir(candidate: number): string {
  return join(homedir(), ".labsweep", "agents", String(candidate));
}
