import { readFileSync } from "node:fs";
import { Command, CommanderError, Option } from "commander";
import { EXIT, reportError } from "./exitCodes.js";
import { collect } from "./flags.js";
import {
  CHECKPOINT_ROOT,
  COMMAND,
  type Finish,
  GRACE,
  GRID_COMMAND,
  SBATCH_ARG,
  SERVER,
  SET,
  SLURM_ALLOCATION,
  SLURM_JOB,
  STATE,
  STORE_OPTION,
  TOKEN,
  TOKEN_FILE,
} from "./options.js";
import { registerNotifyCommand, registerRemoteCommands } from "./remoteCommands.js";
import { registerViewCommands } from "./viewCommands.js";

/** Parses argv, runs one command, returns the exit code. Errors become one clear line. */
export async function main(argv: string[]): Promise<number> {
  quietOnClosedPipe();
  let exitCode: number = EXIT.ok;
  const finish: Finish = (code) => {
    exitCode = code;
  };
  const program = new Command("labsweep")
    .description("Run grids of ML experiments exactly once, from a durable task ledger.")
    .version(packageVersion(), "-V, --version", "print labsweep's version")
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text) })
    .showHelpAfterError("(run labsweep --help for usage)");
  registerSweepCommands(program, finish);
  registerMachineCommands(program, finish);
  registerReportCommands(program, finish);
  registerViewCommands(program, finish);
  registerRemoteCommands(program, finish);
  registerNotifyCommand(program, finish);
  registerLedgerCommands(program, finish);
  // Commands with --store check the store it (or $LABSWEEP_STORE) names before doing anything.
  program.hook("preAction", async (_program, action) => {
    if (action.options.some((option) => option.long === "--store"))
      await (await import("./migrate.js")).applyStoreOption(action.opts());
  });

  try {
    await program.parseAsync(argv);
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.exitCode === 0) return EXIT.ok;
      return EXIT.badInput;
    }
    return reportError(error);
  }
}

/** `plan`, `run` and `serve`: the commands that read a sweep's configs. */
function registerSweepCommands(program: Command, finish: Finish): void {
  program
    .command("plan")
    .description("show tasks per phase, merged duplicates, what is complete and what remains")
    .argument("[configs...]", "sweep config files (YAML); none with --command: a quick grid")
    .option(...STATE)
    .option(...STORE_OPTION)
    .option(...GRID_COMMAND)
    .option(...SET)
    .option("--json", "print one JSON object (with --list: one per task, a line each)")
    .option("--list", "list every task: its phase, parameters and full command line, launcher included")
    .option("--yes", "accept grids over 10 million tasks")
    .action(async (configs: string[], flags) => {
      finish(await (await import("./plan.js")).planCommand(configs, flags));
    });
  program
    .command("run")
    .description("run the sweep on this machine; run again to resume")
    .argument("[configs...]", "sweep config files (YAML); none with --command: a quick grid")
    .option(...STATE)
    .option(...STORE_OPTION)
    .option(...GRID_COMMAND)
    .option(...SET)
    .option(
      "--slots <n>",
      "most tasks at once (default: one per GPU with ≥ 4 GB free, else one per CPU core); on GPU machines a cap only: GPU tasks never exceed their resources.gpus shares",
    )
    .option("--gpus <list>", "only these GPU indices, e.g. 0,2")
    .option("--tag <tag>", "a tag tasks can ask for in resources.tags (repeatable)", collect)
    .option(...GRACE)
    .option(...CHECKPOINT_ROOT)
    .option("--progress-every <seconds>", "period of plain progress lines when not on a terminal", "10")
    .option("--host <address>", "address the live dashboard listens on", "127.0.0.1")
    .option("--port <port>", "the dashboard's port (0: any free port)", "0")
    .option("--no-dashboard", "serve no dashboard")
    .option(
      "--refresh-snapshot",
      "take a new copy of each snapshot: true config's dir for tasks started from now on",
    )
    .option("--yes", "accept grids over 10 million tasks")
    .action(async (configs: string[], flags) => {
      finish(await (await import("./run.js")).runCommand(configs, flags));
    });
  registerServeCommand(program, finish);
}

/** `serve`: the coordinator for remote agents, with `--slurm` the allocator of their jobs. */
function registerServeCommand(program: Command, finish: Finish): void {
  const serve = program
    .command("serve")
    .description("serve the sweep to remote agents over HTTP (the coordinator)")
    .argument("[configs...]", "sweep config files (YAML); none with --command: a quick grid")
    .option(...STATE)
    .option(...STORE_OPTION)
    .option(...GRID_COMMAND)
    .option(...SET)
    .option("--host <address>", "address to listen on", "127.0.0.1")
    .option("--port <port>", "port to listen on (0: any free port)", "7070")
    .option(
      "--agent-token <token>",
      "the agents' token (default: $LABSWEEP_AGENT_TOKEN, else generated and stored)",
    )
    .option("--viewer-token <token>", "the read-only token (default: $LABSWEEP_VIEWER_TOKEN, else generated)")
    .option(
      "--admin-token <token>",
      "the token for add, cancel and retry (default: $LABSWEEP_ADMIN_TOKEN, else generated)",
    )
    .option(
      "--tokens-file <file>",
      'tokens as JSON {"agent","viewer","admin"} in a 0600 file (flags win; default: <state>/tokens.json)',
    )
    .option("--trust-loopback", "reads from this machine (127.0.0.1/localhost) need no token")
    .option("--tls-cert <file>", "serve HTTPS with this certificate (PEM)")
    .option("--tls-key <file>", "and this key (PEM)")
    .option("--lease-seconds <s>", "lease length without a heartbeat", "12")
    .option("--exit-when-done", "exit 0 once every task has finished")
    .option("--artifact-limit <MB>", "largest artifact file agents may upload, in MiB", "1024")
    .option("--yes", "accept grids over 10 million tasks")
    .action(async (configs: string[], flags) => {
      finish(await (await import("./serve.js")).serveCommand(configs, flags));
    });
  for (const [flags, description] of [...SLURM_ALLOCATION, ...SLURM_JOB]) serve.option(flags, description);
  serve.option(...SBATCH_ARG);
  // Tests and benchmarks look at a test cluster's queue more often than a real one needs.
  serve.addOption(
    new Option(
      "--alloc-every <seconds>",
      "with --slurm: look at the queue this often (default: 5)",
    ).hideHelp(),
  );
}

/** `agent`, `slurm` (registerSlurmCommand) and `doctor`: the commands that put a machine to work or describe it. */
function registerMachineCommands(program: Command, finish: Finish): void {
  program
    .command("agent")
    .description("run tasks for a coordinator (labsweep serve) on this machine")
    .option(
      "--server <urls>",
      "the coordinator's URL; several, comma-separated, are tried in turn ($LABSWEEP_SERVER)",
    )
    .option(
      "--token <token>",
      "the coordinator's agent token (default: $LABSWEEP_TOKEN; prefer it or --token-file)",
    )
    .option(...TOKEN_FILE)
    .option(
      "--slots <n>",
      "most tasks at once (default: one per GPU with ≥ 4 GB free, else one per CPU core); on GPU machines a cap only: GPU tasks never exceed their resources.gpus shares",
    )
    .option("--gpus <list>", "only these GPU indices, e.g. 0,2")
    .option("--tag <tag>", "a tag tasks can ask for (repeatable)", collect)
    .option("--name <name>", "the name shown by the coordinator (default: the hostname)")
    .option("--state <dir>", "this agent's state: id, outbox, logs (default: ~/.labsweep/agents/N)")
    .option("--workdir <dir>", "where tasks run when their config's dir does not exist on this machine")
    .option("--stay", "keep waiting for new work when the sweep has nothing left for this machine")
    .option(
      "--probe <name=command>",
      "a check reported to the coordinator: passes if it exits 0 (repeatable)",
      collect,
    )
    .option("--probe-timeout <seconds>", "how long a probe may run", "30")
    .option(...GRACE)
    .option(...CHECKPOINT_ROOT)
    .option(
      "--give-up-after <seconds>",
      "exit 1 once no coordinator has answered for this long and no task runs here (default: retry forever)",
    )
    .option("--idle-exit <seconds>", "exit 0 once no task has run here for this long (default: never)")
    .option(
      "--stop-before <seconds>",
      "in a SLURM allocation: lease only tasks whose timeout ends this long before the allocation does (default: 0)",
    )
    .action(async (flags) => {
      finish(await (await import("./agent.js")).agentCommand(flags));
    });
  registerSlurmCommand(program, finish);
  program
    .command("doctor")
    .description("what an agent on this machine would report: CPUs, RAM, GPUs, driver, probes")
    .option("--json", "print one JSON object")
    .option("--probe <name=command>", "a check to run: passes if it exits 0 (repeatable)", collect)
    .option("--probe-timeout <seconds>", "how long a probe may run", "30")
    .option("--tag <tag>", "a tag to include (repeatable)", collect)
    .action(async (flags) => {
      finish(await (await import("./doctor.js")).doctorCommand(flags));
    });
}

/** `slurm`: agents as a SLURM job array. */
function registerSlurmCommand(program: Command, finish: Finish): void {
  const slurm = program
    .command("slurm")
    .description("submit labsweep agents to SLURM as one job array (--dry-run prints the sbatch script)")
    .option("--server <urls>", "the coordinator's URL(s) as compute nodes reach it ($LABSWEEP_SERVER)")
    .option(
      "--token <token>",
      "the agent token, given to the jobs in their environment (default: $LABSWEEP_TOKEN; prefer it or --token-file)",
    )
    .option(...TOKEN_FILE)
    .option("--agents <n>", "how many agents: the job array's size")
    .option(
      "--give-up-after <seconds>",
      "an idle agent exits after this long without an answer from the coordinator (default: 600)",
    )
    .option("--dry-run", "print the sbatch script instead of submitting it")
    .option("--resume-alloc", "resume the automatic allocation of `serve --slurm` at --server (admin token)")
    .action(async (flags) => {
      finish(await (await import("./slurm.js")).slurmCommand(flags));
    });
  for (const [flags, description] of SLURM_JOB) slurm.option(flags, description);
  slurm.option(...SBATCH_ARG);
}

/** `token`, `status` and `agents`: what a state dir or a coordinator holds. */
function registerReportCommands(program: Command, finish: Finish): void {
  program
    .command("token")
    .description("print the agent token (or --viewer, --admin token) stored in the state dir")
    .argument("[configs...]", "config files, to find the default state dir")
    .option(...STATE)
    .option("--viewer", "print the read-only viewer token")
    .option("--admin", "print the admin token (add, cancel, retry)")
    .action(async (configs: string[], flags) => {
      finish(await (await import("./token.js")).tokenCommand(configs, flags));
    });
  program
    .command("status")
    .description("progress of the sweep (works while a run is going)")
    .argument("[configs...]", "config files, to find the default state dir")
    .option(...STATE)
    .option(...STORE_OPTION)
    .option(...SERVER)
    .option(...TOKEN)
    .option(...TOKEN_FILE)
    .option("--json", "print one JSON object")
    .action(async (configs: string[], flags) => {
      finish(
        flags.server
          ? await (await import("./remoteOps.js")).remoteStatus(flags)
          : await (await import("./status.js")).statusCommand(configs, flags),
      );
    });
  program
    .command("agents")
    .description("the agents that registered, their GPUs and running tasks; lost ones and why")
    .argument("[configs...]", "config files, to find the default state dir")
    .option(...STATE)
    .option(...STORE_OPTION)
    .option(...SERVER)
    .option(...TOKEN)
    .option(...TOKEN_FILE)
    .option("--json", "print one JSON object")
    .action(async (configs: string[], flags) => {
      finish(await (await import("./remoteOps.js")).agentsCommand(configs, flags));
    });
}

/** `retry`, `export`, `verify` and `migrate`: the ledger's upkeep. */
function registerLedgerCommands(program: Command, finish: Finish): void {
  program
    .command("retry")
    .description("give failed tasks a fresh set of retries")
    .argument("[configs...]", "config files, to find the default state dir")
    .option(...STATE)
    .option(...STORE_OPTION)
    .option("--failed", "retry every failed task")
    .option("--phase <name>", "only this phase's failed tasks")
    .option(...SERVER)
    .option(...TOKEN)
    .option(...TOKEN_FILE)
    .action(async (configs: string[], flags) => {
      finish(
        flags.server
          ? await (await import("./remoteOps.js")).remoteRetry(flags)
          : await (await import("./retry.js")).retryCommand(configs, flags),
      );
    });
  for (const [verb, paused, description] of [
    ["pause", true, "stop starting new tasks (all phases, or --phase P); running tasks finish"],
    ["resume", false, "start tasks again after `labsweep pause` (all phases, or --phase P)"],
  ] as const) {
    program
      .command(verb)
      .description(description)
      .argument("[configs...]", "config files, to find the default state dir")
      .option(...STATE)
      .option(...STORE_OPTION)
      .option("--phase <name>", `only this phase`)
      .option(...SERVER)
      .option(...TOKEN)
      .option(...TOKEN_FILE)
      .action(async (configs: string[], flags) => {
        finish(await (await import("./pause.js")).pauseCommand(paused, configs, flags));
      });
  }
  program
    .command("export")
    .description("write all results from the ledger")
    .argument("[configs...]", "config files, to find the default state dir")
    .option(...STATE)
    .option(...STORE_OPTION)
    .option("--format <format>", "csv or jsonl", "csv")
    .option("--output <file>", "write here instead of stdout")
    .option(
      "--metrics",
      "write the live metrics' series (task_id, params, metric, step, value, attempt, time)",
    )
    .action(async (configs: string[], flags) => {
      finish(await (await import("./export.js")).exportCommand(configs, flags));
    });
  program
    .command("verify")
    .description(
      "check the configs' result files against the ledger: each succeeded task's row once, no duplicate, torn or unknown row",
    )
    .argument("<configs...>", "sweep config files (YAML)")
    .option(...STATE)
    .option(...STORE_OPTION)
    .option(...COMMAND)
    .option("--fix", "write missing rows, move foreign ones to a side file beside the CSV (deletes nothing)")
    .option("--json", "print one JSON object")
    .option("--yes", "accept grids over 10 million tasks")
    .action(async (configs: string[], flags) => {
      finish(await (await import("./verify.js")).verifyCommand(configs, flags));
    });
  program
    .command("migrate")
    .description("apply the ledger's pending migrations (also done on every run/serve) and print them")
    .argument("[configs...]", "config files, to find the default state dir")
    .option(...STATE)
    .option(...STORE_OPTION)
    .option("--json", "print one JSON object")
    .action(async (configs: string[], flags) => {
      finish(await (await import("./migrate.js")).migrateCommand(configs, flags));
    });
}

/** The version in labsweep's package.json (two levels up from both src/cli and dist/cli). */
function packageVersion(): string {
  const text = readFileSync(new URL("../../package.json", import.meta.url), "utf8");
  return (JSON.parse(text) as { version: string }).version;
}

let pipeHandled = false;

/**
 * `labsweep status | head -1`: once the reader has gone, a write fails with EPIPE, which Node
 * raises as an unhandled 'error' event (a stack trace). Nobody is left to read the rest, so the
 * command ends quietly, as a C tool killed by SIGPIPE would; a closed stderr is ignored, so a run
 * whose log reader went away keeps running its tasks.
 */
function quietOnClosedPipe(): void {
  if (pipeHandled) return;
  pipeHandled = true;
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(EXIT.ok);
    throw error;
  });
  process.stderr.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code !== "EPIPE") throw error;
  });
}
