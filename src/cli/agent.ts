import { statSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { StateDirInUseError } from "../agent/agentState.js";
import { type ProbeSpec, parseProbe } from "../agent/capabilities.js";
import { UnauthorizedError } from "../agent/httpClient.js";
import { RemoteAgent } from "../agent/remoteAgent.js";
import { Interrupts } from "../app/interrupts.js";
import { tokenFrom } from "./apiClient.js";
import { EXIT, UsageError } from "./exitCodes.js";
import { gpuList, positiveInteger, seconds, tagList } from "./flags.js";

export interface AgentFlags {
  server?: string;
  token?: string;
  tokenFile?: string;
  slots?: string;
  gpus?: string;
  tag?: string[];
  name?: string;
  state?: string;
  workdir?: string;
  stay?: boolean;
  probe?: string[];
  probeTimeout?: string;
  grace?: string;
  checkpointRoot?: string;
  giveUpAfter?: string;
}

/** How many default state dirs (`~/.labsweep/agents/1`, `2`, …) one host may use. */
const MAX_DEFAULT_STATE_DIRS = 64;

/**
 * `labsweep agent`: runs tasks for a coordinator (`labsweep serve`) until it says nothing is left
 * for this machine (or forever with --stay). Exit codes: 0 done, 2 bad flags or a rejected token,
 * 130 stopped by Ctrl-C or SIGTERM, 1 anything else.
 */
export async function agentCommand(flags: AgentFlags): Promise<number> {
  const servers = serverList(flags.server ?? process.env.LABSWEEP_SERVER);
  const token = tokenFrom(flags, ["LABSWEEP_TOKEN"]);
  if (!token)
    throw new UsageError(
      "labsweep agent needs the coordinator's agent token: LABSWEEP_TOKEN in the environment, or --token-file FILE",
    );
  const workdir = flags.workdir === undefined ? undefined : existingDir("--workdir", flags.workdir);
  const base = {
    servers,
    token,
    slots: flags.slots === undefined ? undefined : positiveInteger("--slots", flags.slots),
    gpus: flags.gpus === undefined ? undefined : gpuList(flags.gpus),
    tags: tagList(flags.tag),
    name: flags.name,
    workdir,
    stay: flags.stay ?? false,
    probes: probeList(flags.probe),
    probeTimeoutMs:
      flags.probeTimeout === undefined ? undefined : seconds("--probe-timeout", flags.probeTimeout) * 1000,
    graceMs: flags.grace === undefined ? undefined : seconds("--grace", flags.grace) * 1000,
    checkpointRoot: flags.checkpointRoot === undefined ? undefined : resolve(flags.checkpointRoot),
    giveUpAfterMs:
      flags.giveUpAfter === undefined ? undefined : seconds("--give-up-after", flags.giveUpAfter) * 1000,
  };
  const interrupts = new Interrupts({
    stopping: () =>
      process.stderr.write(
        "labsweep agent: stopping — no new tasks; running ones finish (Ctrl-C again to terminate them)\n",
      ),
    terminating: () =>
      process.stderr.write(
        "labsweep agent: terminating running tasks (SIGTERM, then SIGKILL after the grace period)\n",
      ),
  });
  try {
    for (let candidate = 1; ; candidate++) {
      const stateDir = flags.state ? resolve(flags.state) : defaultStateDir(candidate);
      const agent = new RemoteAgent({ ...base, stateDir });
      interrupts.attach({
        stopLeasing: () => agent.stopLeasing(),
        terminateRunning: () => agent.terminate(),
      });
      try {
        const exit = await agent.run();
        if (exit.kind === "stopped") {
          process.stderr.write("labsweep agent: stopped\n");
          return EXIT.interrupted;
        }
        if (exit.kind === "unreachable") return EXIT.failed;
        process.stderr.write("labsweep agent: the coordinator has nothing left for this machine; exiting\n");
        return EXIT.ok;
      } catch (error) {
        // Another agent on this host has this default dir: take the next one.
        if (error instanceof StateDirInUseError && !flags.state && candidate < MAX_DEFAULT_STATE_DIRS)
          continue;
        if (error instanceof StateDirInUseError || error instanceof UnauthorizedError)
          throw new UsageError(error.message);
        throw error;
      }
    }
  } finally {
    interrupts.dispose();
  }
}

/** `~/.labsweep/agents/N`: each agent on a host needs its own outbox and running files. */
function defaultStateDir(candidate: number): string {
  return join(homedir(), ".labsweep", "agents", String(candidate));
}

/** `--server URL[,URL…]`; a bare host:port means http://host:port. */
export function serverList(text: string | undefined): string[] {
  if (!text)
    throw new UsageError(
      "labsweep agent needs the coordinator's URL: --server URL[,URL…] or LABSWEEP_SERVER",
    );
  return text
    .split(",")
    .map((part) => part.trim())
    .filter(Boolean)
    .map((part) => {
      const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(part) ? part : `http://${part}`;
      let url: URL;
      try {
        url = new URL(withScheme);
      } catch {
        throw new UsageError(`--server takes URLs like http://head-node:7070 — got "${part}"`);
      }
      if (url.protocol !== "http:" && url.protocol !== "https:")
        throw new UsageError(`--server URLs are http:// or https:// — got "${part}"`);
      return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
    });
}

export function probeList(texts: string[] | undefined): ProbeSpec[] {
  const probes = (texts ?? []).map((text) => {
    try {
      return parseProbe(text);
    } catch (error) {
      throw new UsageError(`--probe: ${(error as Error).message}`);
    }
  });
  const names = probes.map((probe) => probe.name);
  const twice = names.find((name, index) => names.indexOf(name) !== index);
  if (twice) throw new UsageError(`--probe ${twice} is given twice`);
  return probes;
}

/** Collects a repeatable option's values. */

function existingDir(flag: string, path: string): string {
  const dir = resolve(path);
  try {
    if (statSync(dir).isDirectory()) return dir;
  } catch {
    // reported below
  }
  throw new UsageError(`${flag} ${path} is not a directory`);
}
