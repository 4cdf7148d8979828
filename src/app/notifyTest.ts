import { randomUUID } from "node:crypto";
import { deliver, type NotifyBody } from "../coordinator/notifyDelivery.js";
import { sweepIdentity, testHappening } from "../coordinator/notifyEvents.js";
import type { Sweep } from "../sweep/loadSweep.js";
import { describeEntry } from "../sweep/notifySetting.js";

/** How one entry took its test event. */
export interface TestOutcome {
  entry: string;
  ok: boolean;
  error?: string;
}

/**
 * `labsweep notify --test`: one test event to every `notify:` entry of the sweep, side by side,
 * each tried once (a test says how the endpoint answers now; the outbox's retries would hide
 * that). Touches no ledger.
 */
export async function testNotifications(sweep: Sweep, now = Date.now()): Promise<TestOutcome[]> {
  const happening = testHappening(sweepIdentity(sweep.files), now);
  return Promise.all(
    sweep.notify.map(async (entry) => {
      const body: NotifyBody = {
        id: randomUUID(),
        event: happening.event,
        ...happening.fields,
        time: new Date(now).toISOString(),
        text: happening.text,
        content: happening.text,
      };
      const result = await deliver(entry, body);
      return result.ok
        ? { entry: describeEntry(entry), ok: true }
        : { entry: describeEntry(entry), ok: false, error: result.error };
    }),
  );
}
