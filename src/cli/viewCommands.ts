import type { Command } from "commander";
import { collect } from "./flags.js";
import { type Finish, SERVER, STATE, STORE_OPTION, TOKEN, TOKEN_FILE } from "./options.js";

/**
 * `results`, `dashboard` and `explain`: what a sweep's ledger says, as a paper's table or the live page,
 * read-only (while a run is going, or long after). Kept beside main.ts, which imports each
 * command's module only when it runs.
 */
export function registerViewCommands(program: Command, finish: Finish): void {
  program
    .command("results")
    .description(
      "summary table: one row per configuration (every parameter but seed), n, mean ± std and a 95% t interval per metric over the seeds",
    )
    .argument("[configs...]", "config files, to find the default state dir")
    .option(...STATE)
    .option(...STORE_OPTION)
    .option(
      "--by <params>",
      "group by only these parameters, comma-separated (default: every parameter but seed; columns show those that vary)",
      collect,
    )
    .option(
      "--metric <metrics>",
      "only these metrics, comma-separated; NAME:min or NAME:max says which way is better (default: every numeric metric; lower is better for names with loss, err(or), perplexity or time)",
      collect,
    )
    .option("--phase <name>", "only this phase (default: every phase, with a phase column when several)")
    .option("--format <format>", "table, md, latex, csv or json", "table")
    .option("--output <file>", "write here instead of stdout")
    .action(async (configs: string[], flags) => {
      finish(await (await import("./results.js")).resultsCommand(configs, flags));
    });
  program
    .command("explain")
    .description(
      "why a task is not running: done, running, failed, its gate, paused, backoff, or which resource no connected agent offers",
    )
    .argument(
      "<task>",
      "the task: its id (as status, plan --list and the dashboard show it), or its signature or the start of one",
    )
    .argument("[configs...]", "config files, to find the default state dir")
    .option(...STATE)
    .option(...STORE_OPTION)
    .option(...SERVER)
    .option(...TOKEN)
    .option(...TOKEN_FILE)
    .option("--json", "print one JSON object")
    .action(async (task: string, configs: string[], flags) => {
      finish(await (await import("./explain.js")).explainCommand(task, configs, flags));
    });
  program
    .command("dashboard")
    .description("serve the dashboard read-only for a sweep (running or not) and print its URL; Ctrl-C stops")
    .argument("[configs...]", "config files, to find the default state dir")
    .option(...STATE)
    .option(...STORE_OPTION)
    .option("--host <address>", "address to listen on", "127.0.0.1")
    .option("--port <port>", "port to listen on (0: any free port)", "0")
    .option("--open", "open the page in the default browser, where there is one")
    .action(async (configs: string[], flags) => {
      finish(await (await import("./dashboard.js")).dashboardCommand(configs, flags));
    });
}
