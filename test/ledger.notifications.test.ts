/**
 * The notifications outbox on both backends: each happening recorded once per entry, in the
 * transaction of a final failure; a row claimed by one sender at a time (PostgreSQL replicas on
 * separate connections included) until its claim runs out; settled as sent, retried or given up.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Coordinator } from "../src/coordinator/coordinator.js";
import { Notifications, targetKey } from "../src/coordinator/notifications.js";
import { sweepIdentity } from "../src/coordinator/notifyEvents.js";
import { claimTask } from "../src/ledger/claimTask.js";
import type { Db } from "../src/ledger/db.js";
import { enqueueNotifications, type NotificationRow } from "../src/ledger/enqueueNotifications.js";
import {
  claimNotifications,
  giveUpNotification,
  markNotificationSent,
  owedNotifications,
  releaseNotificationClaims,
  retryNotificationAt,
} from "../src/ledger/notificationOutbox.js";
import { syncSweep } from "../src/ledger/syncSweep.js";
import { loadSweep } from "../src/sweep/loadSweep.js";
import { useLedgerBackends } from "./helpers/postgres.js";

const NOW = 7_000_000_000_000; // epoch ms past 2^32: BIGINT columns, numbers back
const backends = useLedgerBackends();
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const row = (target: string, about: string): NotificationRow => ({
  target,
  about,
  event: "task_failed",
  payload: JSON.stringify({ text: about }),
  uid: `uid-${target}-${about}`,
});

describe.each(backends)("the notifications outbox on $name", (backend) => {
  it("records a happening once per entry, and hands each row to one claimer at a time", async () => {
    const { db, store, stateDir } = await backend.open();
    await db.transaction(async (tx) => {
      expect(await enqueueNotifications(tx, [row("t1", "a"), row("t2", "a"), row("t1", "b")], NOW)).toBe(3);
    });
    // The same happening again (a repeated check, a replica's): nothing new.
    expect(await enqueueNotifications(db, [row("t1", "a"), row("t1", "b")], NOW)).toBe(0);
    for (let i = 0; i < 20; i++) await enqueueNotifications(db, [row("t3", `n${i}`)], NOW);

    const other = backend.name === "postgres" ? await backend.reopen(store, stateDir) : db;
    const claims = await Promise.all(
      [db, other, db, other].map((ledger) =>
        claimNotifications(ledger, ["t1", "t2", "t3"], NOW, NOW + 45_000, 5),
      ),
    );
    const claimed = claims.flat().map((owed) => owed.id);
    expect(claimed).toHaveLength(new Set(claimed).size); // no row twice
    expect(claimed).toHaveLength(20);
    // Claimed rows wait out their claim; unclaimed ones (and no other entry's) are due.
    const rest = await claimNotifications(db, ["t1", "t2", "t3", "t4"], NOW + 1, NOW + 45_000, 100);
    expect(rest).toHaveLength(3);
    expect(rest[0]).toMatchObject({ tries: 1, created_at: NOW });
    expect(await claimNotifications(db, ["t1", "t2", "t3"], NOW + 2, NOW + 45_000, 100)).toEqual([]);

    // Settled: sent, retried later, given up.
    const [sent, retried, dropped] = rest as [(typeof rest)[0], (typeof rest)[0], (typeof rest)[0]];
    await markNotificationSent(db, sent.id, NOW + 3);
    await retryNotificationAt(db, retried.id, NOW + 10_000, "HTTP 500");
    await giveUpNotification(db, dropped.id, "HTTP 404");
    expect(await owedNotifications(db, ["t1", "t2", "t3"])).toEqual({ owed: 21, nextTry: NOW + 10_000 });
    const again = await claimNotifications(db, ["t1", "t2", "t3"], NOW + 10_000, NOW + 55_000, 10);
    expect(again.map((owed) => [owed.id, owed.tries])).toEqual([[retried.id, 2]]);

    // The sole coordinator's restart ends every claim: what a dead process held is due at once.
    await releaseNotificationClaims(db, NOW + 11_000);
    const due = await claimNotifications(db, ["t1", "t2", "t3"], NOW + 11_000, NOW + 60_000, 100);
    expect(due).toHaveLength(21);
  });

  it("records a final failure's notification in the failure's transaction, once per task_failed entry", async () => {
    const { db } = await backend.open();
    const dir = mkdtempSync(join(tmpdir(), "labsweep-notify-"));
    dirs.push(dir);
    const text = `command: run {x}
retries: 0
notify:
  - on: task_failed
    command: "true"
  - on: sweep_finished
    command: "true"
exp:
  combinations:
    - x: [1, 2]
`;
    const sweep = loadSweep([{ file: join(dir, "sweep.yaml"), text }]);
    await syncSweep(db, sweep, NOW);
    const notifications = new Notifications(db, sweep.notify, { sweep: sweepIdentity(sweep.files) });
    const coordinator = new Coordinator(db, { stateDir: dir, now: () => NOW, notifications });
    const claimed = [];
    for (let i = 0; i < 2; i++) {
      const lease = await claimTask(db, {
        worker: "w",
        host: "h",
        now: NOW,
        leaseMs: 30_000,
        fits: () => ({ gpuIds: [] }),
      });
      if (lease) claimed.push(lease);
    }
    expect(claimed).toHaveLength(2);
    const failed = {
      kind: "failed" as const,
      exitCode: 3,
      signal: null,
      error: "exit code 3\nmore",
      wallSeconds: 1,
    };
    // Both reports in one batch: PostgreSQL's batch path, SQLite's one by one.
    await coordinator.finishMany(
      claimed.map((lease) => ({ attemptId: lease.attemptId, report: { outcome: failed } })),
    );
    const rows = await outbox(db);
    const failedKey = targetKey(sweep.notify[0] as never);
    expect(rows.map((owed) => [owed.target, owed.event])).toEqual([
      [failedKey, "task_failed"],
      [failedKey, "task_failed"],
    ]);
    const payload = JSON.parse(rows[0]?.payload ?? "{}");
    expect(payload).toMatchObject({
      phase: "exp",
      task: { id: claimed[0]?.task.id, params: { x: 1 }, attempt: 1, exit_code: 3, error: "exit code 3" },
      sweep: { name: "sweep" },
    });
    expect(payload.text).toContain("failed for good");
    await notifications.stop(0);
  });
});

async function outbox(db: Db) {
  return db.all<{ target: string; event: string; payload: string }>(
    "SELECT target, event, payload FROM notifications ORDER BY id",
  );
}
