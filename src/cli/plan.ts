import { openSweep } from "../coordinator/openSweep.js";
import { planSweep } from "../coordinator/planSweep.js";
import { openLedgerReadOnly } from "../ledger/openLedger.js";
import { EXIT } from "./exitCodes.js";
import { stateDirFrom } from "./stateDir.js";

export interface PlanFlags {
  state?: string;
  json?: boolean;
  command?: string;
  yes?: boolean;
}

export async function planCommand(configs: string[], flags: PlanFlags): Promise<number> {
  const sweep = openSweep(configs, { defaultCommand: flags.command, yes: flags.yes });
  const ledger = openLedgerReadOnly(stateDirFrom(flags, configs));
  try {
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
