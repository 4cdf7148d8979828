import { openSweep } from "../coordinator/openSweep.js";
import { type ListedTask, listTasks } from "../coordinator/planList.js";
import { planSweep } from "../coordinator/planSweep.js";
import { openLedgerReadOnly } from "../ledger/openLedger.js";
import { EXIT } from "./exitCodes.js";
import { stateDirFrom } from "./stateDir.js";

export interface PlanFlags {
  state?: string;
  json?: boolean;
  command?: string;
  /** `--set [PHASE.]PARAM=VALUES` flags, in order (repeatable). */
  set?: string[];
  yes?: boolean;
  list?: boolean;
}

export async function planCommand(configs: string[], flags: PlanFlags): Promise<number> {
  const sweep = openSweep(configs, { defaultCommand: flags.command, overrides: flags.set, yes: flags.yes });
  const ledger = openLedgerReadOnly(stateDirFrom(flags, configs));
  try {
    if (flags.list) {
      await printList(listTasks(sweep, ledger), flags.json ?? false);
      return EXIT.ok;
    }
    const plan = await planSweep(sweep, ledger);
    if (flags.json) {
      process.stdout.write(`${JSON.stringify(plan)}\n`);
      return EXIT.ok;
    }
    const width = Math.max(5, ...plan.phases.map((phase) => phase.name.length));
    const line = (cells: Array<string | number>): string =>
      `${String(cells[0]).padEnd(width)}  ${cells
        .slice(1)
        .map((cell) => String(cell).padStart(9))
        .join(" ")}\n`;
    process.stdout.write(line(["phase", "tasks", "merged", "complete", "remaining"]));
    for (const phase of plan.phases) {
      process.stdout.write(line([phase.name, phase.tasks, phase.merged, phase.complete, phase.remaining]));
    }
    process.stdout.write(
      `\n${plan.unique} unique tasks (${plan.merged} duplicates merged), ${plan.complete} complete, ${plan.remaining} to run\n`,
    );
    return EXIT.ok;
  } finally {
    await ledger?.close();
  }
}

/**
 * `plan --list`: each unique task, with its parameters and its full command line (launcher
 * included); `--json` prints one JSON object per line, so a huge grid streams.
 */
async function printList(tasks: AsyncIterable<ListedTask>, json: boolean): Promise<void> {
  // `plan --list | head`: a reader that hangs up early ends the listing quietly.
  let closed = false;
  const onError = (error: NodeJS.ErrnoException): void => {
    if (error.code !== "EPIPE") throw error;
    closed = true;
    process.stdout.emit("drain");
  };
  process.stdout.on("error", onError);
  try {
    let chunk = "";
    const counts = { tasks: 0, add: 0, done: 0 };
    for await (const task of tasks) {
      counts.tasks++;
      if (task.done) counts.done++;
      else if (task.id === null) counts.add++;
      chunk += json ? `${JSON.stringify(task)}\n` : listing(task);
      if (chunk.length > 65_536) {
        await write(chunk);
        chunk = "";
      }
      if (closed) return;
    }
    await write(chunk);
    // On stderr: stdout stays the list, one task per entry, for scripts and pipes.
    if (!json && !closed) {
      const other = counts.tasks - counts.add - counts.done;
      process.stderr.write(
        `labsweep: ${counts.tasks} tasks: ${counts.add} to add, ${counts.done} done${other ? `, ${other} in the ledger not done yet` : ""}\n`,
      );
    }
  } finally {
    process.stdout.off("error", onError);
  }
}

/** `#n id (state) phase: k=v …` and the command line below it, indented. */
function listing(task: ListedTask): string {
  const id =
    task.id !== null
      ? ` id ${task.id}${task.state ? ` (${task.state})` : ""}`
      : task.done
        ? " (done: in a results CSV)"
        : "";
  const params = Object.entries(task.params)
    .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`)
    .join(" ");
  return `#${task.n}${id} ${task.phase}: ${params}\n  ${task.command.replaceAll("\n", "\n  ")}\n`;
}

/** Writes to stdout, waiting when the pipe is full (a million lines must not pile up in memory). */
function write(text: string): Promise<void> {
  return new Promise((resolve) => {
    if (process.stdout.write(text)) resolve();
    else process.stdout.once("drain", () => resolve());
  });
}
