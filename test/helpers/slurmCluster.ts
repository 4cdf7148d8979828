/**
 * A single-node SLURM cluster of the test's own: munged, slurmctld and slurmd (Debian's munge and
 * slurm-wlm) run from a temp dir on 127.0.0.1 with a generated slurm.conf, free ports, their own
 * munge key and socket, and every state, spool, pid and log file in that dir. Nothing of the
 * machine's own SLURM or munge (if any) is read or touched: SLURM's commands find this cluster
 * through `SLURM_CONF` in `env`. `stop()` cancels the cluster's jobs, kills whatever of them is
 * left and the three daemons, each by its pid, and removes the dir.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { hostname, tmpdir, totalmem, userInfo } from "node:os";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll } from "vitest";
import { freePort } from "../../src/agent/freePort.js";

const run = promisify(execFile);

/** One row of `squeue`: an array element is `JOB_INDEX` (e.g. `17_0`), a plain job its id. */
export interface SlurmJobRow {
  id: string;
  /** PENDING, RUNNING, COMPLETING, COMPLETED, CANCELLED, TIMEOUT, FAILED, … */
  state: string;
  /** Why it waits or ended (`None`, `Resources`, `TimeLimit`, …). */
  reason: string;
}

export interface SlurmCluster {
  /**
   * The environment SLURM's commands (sbatch, squeue, scancel, `labsweep slurm`) need for this
   * cluster: `SLURM_CONF`, and `PATH` with the dir of sbatch & co. first. Lay it over
   * process.env: `{ ...process.env, ...cluster.env }` (the CLI test helpers do).
   */
  env: { SLURM_CONF: string; PATH: string };
  /** The temp dir holding slurm.conf, the daemons' logs and state. */
  dir: string;
  /** The one node (this host's short name) and its partition, the default one. */
  node: string;
  partition: string;
  /** The node's one feature, for `--constraint`. */
  feature: string;
  /** CPUs the node offers: how many one-CPU jobs run at once. */
  cpus: number;
  /** Runs one of SLURM's commands (`squeue`, `scancel`, `scontrol`, `sinfo`) here; its stdout. */
  command(name: string, args: string[]): Promise<string>;
  /** The cluster's jobs, finished ones too (for slurmctld's MinJobAge, 300 s). */
  jobs(): Promise<SlurmJobRow[]>;
  /** Polls `jobs()` until `done` holds; throws with the rows and the daemons' logs after `timeoutMs`. */
  waitForJobs(
    done: (rows: SlurmJobRow[]) => boolean,
    timeoutMs: number,
    what?: string,
  ): Promise<SlurmJobRow[]>;
  /** The last lines of slurmctld's and slurmd's logs, for a failing test's message. */
  logs(): string;
  stop(): Promise<void>;
}

export interface SlurmClusterOptions {
  /** CPUs the node declares (SLURM trusts it: `SlurmdParameters=config_overrides`). (Default: 4) */
  cpus?: number;
  /**
   * slurm.conf settings laid over the defaults, e.g. `{ KillWait: "5" }`. (Default: none; the
   * defaults keep SLURM's own timings, e.g. KillWait=30 between a job's SIGTERM and SIGKILL)
   */
  settings?: Record<string, string>;
}

/** What the cluster needs from SLURM and munge: the daemons and the commands the tests call. */
const DAEMONS = ["munged", "slurmctld", "slurmd"] as const;
const COMMANDS = ["sbatch", "squeue", "scancel", "scontrol", "sinfo"] as const;
type Binary = (typeof DAEMONS)[number] | (typeof COMMANDS)[number];

/**
 * Where each binary is: $LABSWEEP_SLURM_BIN, PATH, then the sbin and bin dirs Debian installs to
 * (a user's PATH often lacks /usr/sbin). Null when one is missing: SLURM is not installed.
 */
export function slurmBinaries(): Record<Binary, string> | null {
  const dirs = [
    process.env.LABSWEEP_SLURM_BIN,
    ...(process.env.PATH ?? "").split(delimiter),
    "/usr/sbin",
    "/usr/local/sbin",
    "/usr/bin",
    "/usr/local/bin",
  ].filter((dir): dir is string => !!dir);
  const found: Partial<Record<Binary, string>> = {};
  for (const name of [...DAEMONS, ...COMMANDS]) {
    const dir = dirs.find((candidate) => existsSync(join(candidate, name)));
    if (!dir) return null;
    found[name] = join(dir, name);
  }
  return found as Record<Binary, string>;
}

/**
 * Starts the cluster and waits until its node is idle. Throws — the test fails, never skips —
 * when it cannot, with the daemons' logs; nothing is left running then.
 */
export async function startSlurmCluster(options: SlurmClusterOptions = {}): Promise<SlurmCluster> {
  const bin = slurmBinaries();
  if (!bin)
    throw new Error(
      "SLURM or munge is not installed (slurmctld, slurmd, munged, sbatch …): install Debian's slurm-wlm and munge (bash .ci/run does)",
    );
  // Another process may take a free port before a daemon binds it: try a few times.
  for (let attempt = 1; ; attempt++) {
    const daemons = new Daemons(bin, options);
    try {
      await daemons.start();
      return clusterOf(daemons);
    } catch (error) {
      const logs = daemons.logs();
      await daemons.stop();
      if (attempt < 3) continue;
      throw new Error(`could not start a SLURM cluster: ${(error as Error).message}\n${logs}`, {
        cause: error,
      });
    }
  }
}

/**
 * Starts one cluster for the calling test file (beforeAll) and stops it after its last test.
 * Returns an accessor that throws the reason the cluster could not start, so each test that
 * needs it fails with that reason.
 */
export function useSlurmCluster(options: SlurmClusterOptions = {}): () => SlurmCluster {
  let cluster: SlurmCluster | null = null;
  let failure: unknown = null;
  beforeAll(async () => {
    try {
      cluster = await startSlurmCluster(options);
    } catch (error) {
      failure = error;
    }
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  }, 120_000);
  return () => {
    if (cluster) return cluster;
    throw new Error("the test SLURM cluster did not start", { cause: failure });
  };
}

function clusterOf(daemons: Daemons): SlurmCluster {
  const command = async (name: string, args: string[]): Promise<string> =>
    (await run(name, args, { env: { ...process.env, ...daemons.env }, timeout: 30_000 })).stdout;
  const jobs = async (): Promise<SlurmJobRow[]> =>
    (await command("squeue", ["--noheader", "--states=all", "--format=%i|%T|%r"]))
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => {
        const [id = "", state = "", reason = ""] = line.trim().split("|");
        return { id, state, reason };
      });
  return {
    env: daemons.env,
    dir: daemons.dir,
    node: daemons.node,
    partition: PARTITION,
    feature: NODE_FEATURE,
    cpus: daemons.cpus,
    command,
    jobs,
    async waitForJobs(done, timeoutMs, what = "the SLURM jobs") {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const rows = await jobs();
        if (done(rows)) return rows;
        if (Date.now() > deadline)
          throw new Error(
            `${what}: not there after ${timeoutMs} ms; squeue: ${JSON.stringify(rows)}\n${daemons.logs()}`,
          );
        await sleep(500);
      }
    },
    logs: () => daemons.logs(),
    stop: () => daemons.stop(),
  };
}

const PARTITION = "labsweep";
const NODE_FEATURE = "labsweep-node";

/** The three daemons of one cluster, each a child process of the test, and their files. */
class Daemons {
  readonly dir = mkdtempSync(join(tmpdir(), "labsweep-slurm-"));
  readonly node = hostname().split(".")[0] || "localhost";
  readonly cpus: number;
  readonly env: { SLURM_CONF: string; PATH: string };
  private readonly children: ChildProcess[] = [];
  private readonly conf = join(this.dir, "slurm.conf");
  private readonly socket = join(this.dir, "munge", "munge.socket");

  constructor(
    private readonly bin: Record<Binary, string>,
    private readonly options: SlurmClusterOptions,
  ) {
    this.cpus = options.cpus ?? 4;
    const commandDir = this.bin.sbatch.slice(0, this.bin.sbatch.lastIndexOf("/"));
    this.env = { SLURM_CONF: this.conf, PATH: `${commandDir}${delimiter}${process.env.PATH ?? ""}` };
    process.once("exit", this.killAtExit);
  }

  async start(): Promise<void> {
    // munged wants its socket's dir, and every dir above it, searchable by all; its key private.
    chmodSync(this.dir, 0o755);
    for (const sub of ["munge", "state", "spool", "tmp"]) mkdirSync(join(this.dir, sub), { mode: 0o755 });
    mkdirSync(join(this.dir, "key"), { mode: 0o700 });
    writeFileSync(join(this.dir, "key", "munge.key"), randomBytes(1024), { mode: 0o600 });
    writeFileSync(join(this.dir, "plugstack.conf"), "");
    this.spawn("munged", [
      "--foreground",
      `--socket=${this.socket}`,
      `--key-file=${join(this.dir, "key", "munge.key")}`,
      `--pid-file=${join(this.dir, "munge", "munged.pid")}`,
      `--log-file=${join(this.dir, "munge", "munged.log")}`,
      `--seed-file=${join(this.dir, "munge", "munged.seed")}`,
    ]);
    await this.until(() => existsSync(this.socket), 20_000, "munged's socket");
    writeFileSync(this.conf, this.slurmConf(await freePort(), await freePort()));
    this.spawn("slurmctld", ["-D", "-f", this.conf]);
    this.spawn("slurmd", ["-D", "-f", this.conf, "-N", this.node]);
    await this.until(async () => (await this.sinfo()) === "idle", 60_000, "the node to be idle in sinfo");
  }

  private slurmConf(controllerPort: number, nodePort: number): string {
    const user = userInfo().username;
    const file = (name: string) => join(this.dir, name);
    const settings: Record<string, string> = {
      ClusterName: "labsweep",
      SlurmctldHost: `${this.node}(127.0.0.1)`,
      SlurmUser: user,
      SlurmdUser: user,
      SlurmctldPort: String(controllerPort),
      SlurmdPort: String(nodePort),
      AuthType: "auth/munge",
      CredType: "cred/munge",
      AuthInfo: `socket=${this.socket}`,
      StateSaveLocation: file("state"),
      SlurmdSpoolDir: file("spool"),
      TmpFS: file("tmp"),
      SlurmctldPidFile: file("slurmctld.pid"),
      SlurmdPidFile: file("slurmd.pid"),
      SlurmctldLogFile: file("slurmctld.log"),
      SlurmdLogFile: file("slurmd.log"),
      PlugStackConfig: file("plugstack.conf"),
      // No cgroups: a container or a laptop has none to give. Jobs are tracked as process trees.
      ProctrackType: "proctrack/linuxproc",
      TaskPlugin: "task/none",
      JobAcctGatherType: "jobacct_gather/none",
      AccountingStorageType: "accounting_storage/none",
      JobCompType: "jobcomp/none",
      MpiDefault: "none",
      SwitchType: "switch/none",
      SelectType: "select/cons_tres",
      SelectTypeParameters: "CR_CPU",
      // The node declares the CPUs asked for, whatever the machine has.
      SlurmdParameters: "config_overrides",
      ReturnToService: "2",
      ...this.options.settings,
    };
    const memoryMb = Math.max(1024, Math.floor(totalmem() / 2 ** 20) - 512);
    return [
      "# Written by test/helpers/slurmCluster.ts for one test file's cluster.",
      ...Object.entries(settings).map(([key, value]) => `${key}=${value}`),
      `NodeName=${this.node} NodeAddr=127.0.0.1 CPUs=${this.cpus} RealMemory=${memoryMb} Feature=${NODE_FEATURE} State=UNKNOWN`,
      `PartitionName=${PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP`,
      "",
    ].join("\n");
  }

  private spawn(name: Binary, args: string[]): void {
    const out = openSync(join(this.dir, `${name}.out`), "a");
    try {
      const child = spawn(this.bin[name], args, {
        env: { ...process.env, ...this.env },
        stdio: ["ignore", out, out],
      });
      child.once("error", () => {}); // seen as its exit: `until` fails with the logs
      this.children.push(child);
    } finally {
      closeSync(out);
    }
  }

  private async sinfo(): Promise<string> {
    try {
      const { stdout } = await run(this.bin.sinfo, ["--noheader", "--format=%t", "--nodes", this.node], {
        env: { ...process.env, ...this.env },
        timeout: 10_000,
      });
      return stdout.trim();
    } catch {
      return "not answering"; // the controller is still starting
    }
  }

  private async until(
    ready: () => boolean | Promise<boolean>,
    timeoutMs: number,
    what: string,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await ready())) {
      const exited = this.children.find((child) => child.exitCode !== null || child.signalCode !== null);
      if (exited)
        throw new Error(
          `${exited.spawnfile} exited (${exited.exitCode ?? exited.signalCode}) before ${what}`,
        );
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await sleep(200);
    }
  }

  /**
   * Cancels every job, waits for their processes (the job steps' slurmstepd and what they
   * started, all of which carry this cluster's SLURM_CONF) to end, kills those that do not, then
   * stops the daemons in reverse order, each by its pid, and removes the dir.
   */
  async stop(): Promise<void> {
    process.off("exit", this.killAtExit);
    try {
      await run(this.bin.scancel, ["--partition", PARTITION], {
        env: { ...process.env, ...this.env },
        timeout: 10_000,
      });
    } catch {
      // no controller to ask (it never started or died): the job processes are killed below
    }
    // slurmctld's own helper (slurmscriptd) is its child; slurmstepd daemonizes away from slurmd.
    const daemons = new Set(this.children.map((child) => child.pid));
    const jobProcesses = () =>
      processesWithEnv(`SLURM_CONF=${this.conf}`).filter(
        (pid) => !daemons.has(pid) && !daemons.has(parentOf(pid)),
      );
    const deadline = Date.now() + 40_000;
    while (jobProcesses().length > 0 && Date.now() < deadline) await sleep(250);
    for (const pid of jobProcesses()) kill(pid, "SIGKILL");
    for (const child of [...this.children].reverse()) await stopChild(child);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The last lines of each daemon's log. */
  logs(): string {
    return ["slurmctld.log", "slurmd.log", "munge/munged.log", "slurmctld.out", "slurmd.out", "munged.out"]
      .filter((name) => existsSync(join(this.dir, name)))
      .map((name) => {
        const lines = readFileSync(join(this.dir, name), "utf8").trimEnd().split("\n").slice(-15);
        return `--- ${name}\n${lines.join("\n")}`;
      })
      .join("\n");
  }

  /** A test process that ends without afterAll (a timeout, Ctrl-C) still leaves nothing running. */
  private readonly killAtExit = (): void => {
    for (const pid of processesWithEnv(`SLURM_CONF=${this.conf}`)) kill(pid, "SIGKILL");
    for (const child of this.children) if (child.pid) kill(child.pid, "SIGKILL");
    rmSync(this.dir, { recursive: true, force: true });
  };
}

/** SIGTERM, then SIGKILL after 10 s; resolves once it has exited. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || !child.pid) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

/** The pids (not this process) whose environment holds `entry` (`NAME=value`), from /proc. */
function processesWithEnv(entry: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^[0-9]+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${name}/environ`, "latin1").split("\0").includes(entry))
        pids.push(Number(name));
    } catch {
      // it exited meanwhile, or is another user's: not ours
    }
  }
  return pids;
}

function parentOf(pid: number): number {
  try {
    // /proc/PID/stat: "pid (comm) state ppid …"; comm may hold spaces and parentheses.
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return 0;
  }
}

function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
