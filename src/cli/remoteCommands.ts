import type { Command } from "commander";
import { COMMAND, type Finish, SERVER, TOKEN, TOKEN_FILE } from "./options.js";

/** `cancel`, `add` and `logs`: the commands only a running coordinator answers. */
export function registerRemoteCommands(program: Command, finish: Finish): void {
  program
    .command("cancel")
    .description("cancel tasks (ids) or a whole phase on a running coordinator")
    .argument("[tasks...]", "task ids")
    .option("--phase <name>", "every task of this phase")
    .option(...SERVER)
    .option(...TOKEN)
    .option(...TOKEN_FILE)
    .action(async (tasks: string[], flags) => {
      finish(await (await import("./remoteOps.js")).cancelCommand(tasks, flags));
    });
  program
    .command("add")
    .description("add config files to a running coordinator's sweep")
    .argument("<configs...>", "sweep config files (YAML)")
    .option(...SERVER)
    .option(...TOKEN)
    .option(...TOKEN_FILE)
    .option("--yes", "accept a sweep over 10 million tasks")
    .action(async (configs: string[], flags) => {
      finish(await (await import("./remoteOps.js")).addCommand(configs, flags));
    });
  program
    .command("logs")
    .description("a task's log (latest attempt) from a coordinator; -f follows it")
    .argument("<task>", "task id")
    .option("-f, --follow", "keep printing until the attempt ends")
    .option("--attempt <n>", "a given attempt instead of the latest")
    .option(...SERVER)
    .option(...TOKEN)
    .option(...TOKEN_FILE)
    .action(async (task: string, flags) => {
      finish(await (await import("./remoteOps.js")).logsCommand(task, flags));
    });
}

/** `notify`: the configs' notify: entries, and a test event to each. */
export function registerNotifyCommand(program: Command, finish: Finish): void {
  program
    .command("notify")
    .description("check the configs' notify: entries (--test sends each a test event and says how it went)")
    .argument("<configs...>", "sweep config files (YAML)")
    .option("--test", "send a test event to every notify: entry; exit 1 if any failed")
    .option(...COMMAND)
    .action(async (configs: string[], flags) => {
      finish(await (await import("./notify.js")).notifyCommand(configs, flags));
    });
}
