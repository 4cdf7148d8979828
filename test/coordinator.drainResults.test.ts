/**
 * When the tasks are done, `run` and `serve --exit-when-done` wait for the result files through
 * drainResults: it writes what is owed at once, cutting short the pause in which a flush gathers
 * rows into one append (issue 14: run exits within 50 ms of its last result). The pause's timer
 * is faked here and never advanced, so a drain that waited for it would never end.
 */
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Coordinator } from "../src/coordinator/coordinator.js";
import { useLedgerBackends } from "./helpers/postgres.js";
import { csvRecords, succeedAll, sweepLedger } from "./helpers/resultsLedger.js";

const backends = useLedgerBackends();

const SWEEP = `command: run {x}
a:
  output_dir: out/a
  combinations:
    - x: [1, 2, 3]
`;

afterEach(() => {
  vi.useRealTimers();
});

describe.each(backends)("draining results on $name", (backend) => {
  it("writes every owed row at once, ending the batching pause of a flush under way", async () => {
    const { db, root } = await sweepLedger(backend, SWEEP);
    await succeedAll(db);
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const coordinator = new Coordinator(db, { stateDir: join(root, "state") });
    // A finish's flush: it pauses to gather rows (a faked timer, never advanced).
    const gathering = coordinator.flushResults();
    await coordinator.drainResults();
    await gathering;
    const rows = csvRecords(join(root, "out", "a", "final_results.csv"));
    expect(rows.map((row) => row.x).sort()).toEqual(["1", "2", "3"]);
    coordinator.stopRetryingResults();
  });
});
