import { resolve } from "node:path";
import { runSweep } from "../app/run.js";
import { gpuList, portNumber, positiveInteger, seconds, tagList } from "./flags.js";
import { ProgressView } from "./progress.js";
import { stateDirFrom } from "./stateDir.js";

export interface RunFlags {
  state?: string;
  slots?: string;
  gpus?: string;
  /** Tags this machine offers to tasks' resources.tags (repeatable, comma-separated allowed). */
  tag?: string[];
  command?: string;
  /** `--set [PHASE.]PARAM=VALUES` flags, in order (repeatable). */
  set?: string[];
  yes?: boolean;
  grace?: string;
  checkpointRoot?: string;
  progressEvery?: string;
  /** Address the dashboard listens on. (Default: 127.0.0.1) */
  host?: string;
  /** The dashboard's port; 0 picks a free one. (Default: 0) */
  port?: string;
  /** false with --no-dashboard. (Default: true) */
  dashboard?: boolean;
  /** --refresh-snapshot: new copies of `snapshot: true` configs' dirs. (Default: false) */
  refreshSnapshot?: boolean;
}

/** `labsweep run`: parses the flags (bad ones exit 2); the run and its exit code are app/run.ts's. */
export async function runCommand(configs: string[], flags: RunFlags): Promise<number> {
  const slots = flags.slots === undefined ? undefined : positiveInteger("--slots", flags.slots);
  const gpus = flags.gpus === undefined ? undefined : gpuList(flags.gpus);
  const tags = tagList(flags.tag);
  const graceMs = flags.grace === undefined ? undefined : seconds("--grace", flags.grace) * 1000;
  const port = flags.port === undefined ? 0 : portNumber(flags.port);
  const progressEveryMs =
    flags.progressEvery === undefined ? 10_000 : seconds("--progress-every", flags.progressEvery) * 1000;
  return runSweep(configs, {
    stateDir: stateDirFrom(flags, configs),
    slots,
    gpus,
    tags,
    graceMs,
    ...(flags.checkpointRoot !== undefined && { checkpointRoot: resolve(flags.checkpointRoot) }),
    command: flags.command,
    overrides: flags.set,
    yes: flags.yes,
    refreshSnapshot: flags.refreshSnapshot === true,
    dashboard: flags.dashboard === false ? null : { host: flags.host ?? "127.0.0.1", port },
    view: await ProgressView.open(process.stderr, progressEveryMs),
  });
}
