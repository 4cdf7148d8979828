/**
 * explainTask's reads and verdicts on both ledgers (SQLite and a real PostgreSQL server): the
 * gate and the progress of the phase it waits for, a task's place in line by priority then id,
 * a paused phase, a backoff, a final failure, a signature prefix (case-sensitive, as signatures
 * are base64url), and a registered agent's offer judged against a task's resources.
 */
import { describe, expect, it } from "vitest";
import { registerAgent } from "../src/ledger/agents.js";
import { type ClaimRequest, claimTask } from "../src/ledger/claimTask.js";
import type { Db } from "../src/ledger/db.js";
import { evaluateGates } from "../src/ledger/evaluateGates.js";
import { finishAttempt } from "../src/ledger/finishAttempt.js";
import { pausePhases } from "../src/ledger/pausePhases.js";
import { explainTask, TaskRefError } from "../src/ledger/reads/explain.js";
import { syncSweep } from "../src/ledger/syncSweep.js";
import type { Lease } from "../src/protocol/interfaces.js";
import { loadSweep } from "../src/sweep/loadSweep.js";
import { useLedgerBackends } from "./helpers/postgres.js";

const NOW = 7_000_000_000_000;
const backends = useLedgerBackends();

// Ids as declared: a 1-3, b 4-5 (after a), c 6 (priority 5, needs 24 GB of GPU memory).
const SWEEP = `
command: run {x}
a:
  retries: 1
  backoff: 1m
  combinations:
    - x: [1, 2, 3]
b:
  after: [a]
  retries: 0
  combinations:
    - x: [10, 11]
c:
  priority: 5
  resources: {gpus: 1, gpu_memory_gb: 24}
  combinations:
    - x: [20]
`;

async function claim(
  db: Db,
  now: number,
  fits: ClaimRequest["fits"] = () => ({ gpuIds: [] }),
): Promise<Lease> {
  const lease = await claimTask(db, { worker: "w1", host: "host-a", now, leaseMs: 30_000, fits });
  if (!lease) throw new Error("nothing to claim");
  return lease;
}

const failed = {
  kind: "failed" as const,
  exitCode: 2,
  signal: null,
  error: "Traceback\nImportError: no torch",
  wallSeconds: 1,
};

describe.each(backends)("explainTask on $name", (backend) => {
  it("tells gate, place in line, pause, backoff, failure and offers apart", async () => {
    const { db } = await backend.open();
    await syncSweep(db, loadSweep([{ file: "/tmp/x/sweep.yaml", text: SWEEP }]), NOW);
    await evaluateGates(db, NOW);
    const why = async (ref: string, now = NOW, coordinator: boolean | null = true) =>
      (await explainTask(db, ref, { now, coordinator })).reasons;

    // c (priority 5) is leased before a's tasks; then a by id.
    expect(await why("2")).toEqual([expect.objectContaining({ code: "queued", ahead: 2 })]);
    expect((await why("2"))[0]?.text).toBe(
      "queued: 2 claimable tasks are leased before it (higher priority, or the same and a lower id)",
    );
    expect(await why("6")).toEqual([expect.objectContaining({ code: "queued", ahead: 0 })]);
    const gate = (await why("4"))[0];
    expect(gate).toMatchObject({
      code: "gate",
      phase: "b",
      waitsFor: [{ name: "a", total: 3, settled: 0, succeeded: 0, failed: 0 }],
    });

    // Task 1 (claimed: c is claimed by a worker whose GPU is too small) fails once: backoff.
    const first = await claim(db, NOW, (policy) =>
      policy.resources.gpuMemoryGb > 0 ? null : { gpuIds: [] },
    );
    expect(first.task.id).toBe(1);
    expect((await why("1"))[0]).toMatchObject({ code: "running" });
    await finishAttempt(db, first.attemptId, failed, NOW + 10);
    const backoff = (await why("1", NOW + 20))[0];
    expect(backoff).toMatchObject({ code: "backoff", until: NOW + 10 + 60_000 });
    expect(backoff?.text).toContain("after attempt 1 (ImportError: no torch)");
    // Its backoff over, it fails for good.
    const second = await claim(db, NOW + 70_000, (policy) =>
      policy.resources.gpuMemoryGb > 0 ? null : { gpuIds: [] },
    );
    expect(second.task.id).toBe(1);
    await finishAttempt(db, second.attemptId, failed, NOW + 70_010);
    expect(await why("1", NOW + 70_020)).toEqual([
      expect.objectContaining({
        code: "failed",
        text: "failed for good after 2 attempts: ImportError: no torch",
        hint: "labsweep retry --failed --phase a",
      }),
    ]);

    await pausePhases(db, true, NOW, { phase: "a" });
    expect(await why("2", NOW + 70_020)).toEqual([
      expect.objectContaining({ code: "paused", phase: "a", hint: "labsweep resume --phase a" }),
    ]);
    await pausePhases(db, false, NOW, { phase: "a" });

    // A connected agent whose GPU has 11.5 GB free, as it registered.
    await registerAgent(
      db,
      {
        id: "agent-b",
        name: "b",
        host: "b",
        info: {
          agentId: "agent-b",
          name: "b",
          host: "b",
          slots: 1,
          cpus: 4,
          tags: [],
          gpus: [{ index: 0, memoryTotalMiB: 24_576, memoryFreeMiB: 11_776 }],
        },
      },
      NOW,
    );
    expect(await why("6", NOW + 70_020)).toEqual([
      expect.objectContaining({
        code: "resources",
        text: "needs 24 GB free GPU memory; largest free at registration: 11.5 GB on host b",
      }),
    ]);
    // With no coordinator, that comes first; with live offers, they decide.
    expect((await why("2", NOW + 70_020, false))[0]).toMatchObject({ code: "no_coordinator" });
    const live = await explainTask(db, "6", { now: NOW, coordinator: true, offers: [] });
    expect(live.reasons[0]).toMatchObject({
      code: "no_agent",
      text: "no agent is connected to the coordinator",
    });

    // A signature's start names one task; its case matters.
    const signature = (await explainTask(db, "6", { now: NOW })).task.signature;
    expect((await explainTask(db, signature.slice(0, 8))).task.id).toBe(6);
    const swapped = signature
      .slice(0, 8)
      .replace(/[a-z]/g, (c) => c.toUpperCase())
      .replace(/[A-Z]/g, (c) => c.toLowerCase());
    if (swapped !== signature.slice(0, 8))
      await expect(explainTask(db, `${swapped}`)).rejects.toThrow(TaskRefError);
    await expect(explainTask(db, "99")).rejects.toThrow("no task 99 in this ledger");
  });
});
