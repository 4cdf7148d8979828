import { statSync } from "node:fs";
import { resolve } from "node:path";
import { type ProbeSpec, parseProbe } from "../agent/capabilities.js";
import { type AgentRunOptions, runAgent } from "../app/agent.js";
import { tokenFrom } from "./apiClient.js";
import { UsageError } from "./exitCodes.js";
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
  idleExit?: string;
  stopBefore?: string;
}

/**
 * `labsweep agent`: runs tasks for a coordinator (`labsweep serve`) until it says nothing is left
 * for this machine (or forever with --stay). Parses the flags (bad ones exit 2); the run and its
 * other exit codes are app/agent.ts's.
 */
export async function agentCommand(flags: AgentFlags): Promise<number> {
  const servers = serverList(flags.server ?? process.env.LABSWEEP_SERVER);
  const token = tokenFrom(flags, ["LABSWEEP_TOKEN"]);
  if (!token)
    throw new UsageError(
      "labsweep agent needs the coordinator's agent token: LABSWEEP_TOKEN in the environment, or --token-file FILE",
    );
  const workdir = flags.workdir === undefined ? undefined : existingDir("--workdir", flags.workdir);
  const base: AgentRunOptions = {
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
    idleExitMs: flags.idleExit === undefined ? undefined : seconds("--idle-exit", flags.idleExit) * 1000,
    stopBeforeMs:
      flags.stopBefore === undefined ? undefined : seconds("--stop-before", flags.stopBefore) * 1000,
  };
  return runAgent({ ...base, stateDir: flags.state ? resolve(flags.state) : undefined });
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
