import { testNotifications } from "../app/notifyTest.js";
import { openSweep } from "../coordinator/openSweep.js";
import { describeEntry } from "../sweep/notifySetting.js";
import { EXIT, UsageError } from "./exitCodes.js";

export interface NotifyFlags {
  test?: boolean;
  command?: string;
}

/**
 * `labsweep notify CONFIG…`: lists the configs' notify: entries (URLs redacted); with --test,
 * sends each a test event and prints one line per entry. Exit 1 if any failed, 2 for a bad config.
 */
export async function notifyCommand(configs: string[], flags: NotifyFlags): Promise<number> {
  const sweep = openSweep(configs, { defaultCommand: flags.command });
  if (sweep.notify.length === 0)
    throw new UsageError(
      `no notify: entries in ${configs.join(", ")}: nothing to ${flags.test ? "test" : "list"}`,
    );
  if (!flags.test) {
    for (const entry of sweep.notify) process.stdout.write(`${describeEntry(entry)}\n`);
    return EXIT.ok;
  }
  const outcomes = await testNotifications(sweep);
  for (const outcome of outcomes)
    process.stdout.write(
      outcome.ok ? `ok      ${outcome.entry}\n` : `FAILED  ${outcome.entry}: ${outcome.error}\n`,
    );
  const failed = outcomes.filter((outcome) => !outcome.ok).length;
  process.stdout.write(
    `${outcomes.length - failed} of ${outcomes.length} notify entries took the test event\n`,
  );
  return failed > 0 ? EXIT.failed : EXIT.ok;
}
