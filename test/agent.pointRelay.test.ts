import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readEvents } from "../src/agent/eventLines.js";
import { HttpError } from "../src/agent/httpClient.js";
import { PointRelay } from "../src/agent/pointRelay.js";
import type { AttemptPoints } from "../src/protocol/interfaces.js";
import { MAX_SERIES_PER_TASK } from "../src/protocol/points.js";
import { tempDir } from "./helpers/cli.js";

const report = (step: number, metrics: Record<string, unknown>) =>
  `${JSON.stringify({ type: "report", step, time: 1000 + step, metrics })}\n`;

function files(): { eventsPath: string; logPath: string } {
  const dir = tempDir();
  const paths = { eventsPath: join(dir, "attempt-1.events.jsonl"), logPath: join(dir, "attempt-1.log") };
  writeFileSync(paths.logPath, "");
  return paths;
}

const start = () => ({ offset: 0, line: 0, skipping: false });

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("readEvents", () => {
  it("takes whole lines only, and an unfinished last line once the task has exited", () => {
    const { eventsPath } = files();
    writeFileSync(eventsPath, `${report(0, { loss: 1 })}{"type": "report", "step": 1, "metr`);
    const first = readEvents(eventsPath, start(), new Set(), false, 1e6);
    expect(first.points.map((point) => point.step)).toEqual([0]);
    expect(first.cursor).toEqual({ offset: report(0, { loss: 1 }).length, line: 1, skipping: false });
    appendFileSync(eventsPath, 'ics": {"loss": 0.5}}');
    // Still no "\n": while the task runs it may write more.
    expect(readEvents(eventsPath, first.cursor, new Set(), false, 1e6).points).toEqual([]);
    const last = readEvents(eventsPath, first.cursor, new Set(), true, 1e6);
    expect(last.points).toEqual([{ step: 1, time: expect.any(Number), metrics: { loss: 0.5 } }]);
  });

  it("drops bad lines, bad values and long names, flattens nested metrics, reads Python's NaN", () => {
    const { eventsPath } = files();
    writeFileSync(
      eventsPath,
      [
        "garbage\n",
        "[1, 2]\n",
        report(-1, { loss: 1 }),
        report(1.5, { loss: 1 }),
        `${JSON.stringify({ type: "report", step: 2, metrics: "x" })}\n`,
        '{"type": "report", "step": 3, "time": 5, "metrics": {"loss": NaN, "acc": Infinity, "ok": 2}}\n',
        report(4, { val: { acc: 0.5 }, ["n".repeat(201)]: 1, s: "text", b: true }),
        `${JSON.stringify({ type: "artifact", path: "x" })}\n`,
        "\n",
      ].join(""),
    );
    const read = readEvents(eventsPath, start(), new Set(), true, 1e6);
    expect(read.points).toEqual([
      { step: 3, time: 5, metrics: { ok: 2 } },
      { step: 4, time: 1004, metrics: { "val.acc": 0.5 } },
    ]);
    expect(read.invalid.map((bad) => bad.line)).toEqual([1, 2, 3, 4, 5]);
    expect(read.invalid[2]?.error).toContain("step must be a whole number");
  });

  it("drops a line over 64 KiB whole, even while it is still being written", () => {
    const { eventsPath } = files();
    const huge = `{"type": "report", "step": 1, "metrics": {"loss": 1}, "pad": "${"z".repeat(70_000)}`;
    writeFileSync(eventsPath, `${report(0, { loss: 1 })}${huge}`);
    const first = readEvents(eventsPath, start(), new Set(), false, 1e6);
    expect(first.points).toHaveLength(1);
    expect(first.invalid).toEqual([{ line: 2, error: "longer than 64 KiB" }]);
    expect(first.cursor.skipping).toBe(true);
    appendFileSync(eventsPath, `"}\n${report(2, { loss: 0.5 })}`);
    const next = readEvents(eventsPath, first.cursor, new Set(), false, 1e6);
    expect(next.points.map((point) => point.step)).toEqual([2]);
    expect(next.invalid).toEqual([]);
  });

  it("keeps at most MAX_SERIES_PER_TASK names for a task", () => {
    const { eventsPath } = files();
    const many = Object.fromEntries(Array.from({ length: MAX_SERIES_PER_TASK + 5 }, (_, i) => [`m${i}`, i]));
    writeFileSync(eventsPath, report(0, many) + report(1, { m0: 1, fresh: 2 }));
    const read = readEvents(eventsPath, start(), new Set(), true, 1e6);
    expect(Object.keys(read.points[0]?.metrics ?? {})).toHaveLength(MAX_SERIES_PER_TASK);
    expect(read.points[1]?.metrics).toEqual({ m0: 1 });
  });
});

describe("PointRelay", () => {
  it("sends again from the acknowledged offset after a failed send, and tells the log of bad lines once", async () => {
    const paths = files();
    writeFileSync(paths.eventsPath, `${report(0, { loss: 1 })}bad\n${report(1, { loss: 0.5 })}`);
    const sent: AttemptPoints[][] = [];
    let failing = true;
    const warnings: string[] = [];
    const relay = new PointRelay({
      send: async (batches) => {
        if (failing) throw new Error("coordinator away");
        sent.push(batches);
      },
      intervalMs: 10,
      warn: (message) => warnings.push(message),
    });
    relay.watch(7, paths);
    await until(() => warnings.length > 0, "a warning");
    expect(warnings[0]).toContain("could not relay live metrics");
    appendFileSync(paths.eventsPath, `bad again\n${report(2, { loss: 0.25 })}`);
    failing = false;
    await until(() => sent.flat().flatMap((batch) => batch.points).length >= 3, "the points");
    relay.exited(7);
    await relay.settled(7, 5000);
    relay.stop();
    const steps = sent.flat().flatMap((batch) => batch.points.map((point) => point.step));
    expect(steps).toEqual([0, 1, 2]);
    expect(warnings).toHaveLength(1);
    const log = readFileSync(paths.logPath, "utf8");
    expect(log.match(/dropped line/g)).toHaveLength(1);
    expect(log).toContain("dropped line 2 of LABSWEEP_EVENTS_FILE (not JSON)");
    expect(log).toContain("2 lines of LABSWEEP_EVENTS_FILE were dropped in all");
  });

  it("splits a large backlog into requests under a quarter of the body limit", async () => {
    const paths = files();
    const metrics = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`metric_number_${i}`, i / 7]));
    let text = "";
    for (let step = 0; step < 2000; step++) text += report(step, metrics);
    writeFileSync(paths.eventsPath, text);
    const sizes: number[] = [];
    let points = 0;
    const relay = new PointRelay({
      send: async (batches) => {
        sizes.push(Buffer.byteLength(JSON.stringify({ attempts: batches })));
        for (const batch of batches) points += batch.points.length;
      },
      intervalMs: 10,
    });
    relay.watch(1, paths);
    relay.exited(1);
    await relay.settled(1, 10_000);
    relay.stop();
    expect(points).toBe(2000);
    expect(sizes.length).toBeGreaterThan(4);
    for (const size of sizes) expect(size).toBeLessThan(512 * 1024);
  });

  it("reads only the exited attempt's file at an exit; running ones wait for the timer", async () => {
    const sent: AttemptPoints[][] = [];
    const relay = new PointRelay({ send: async (batches) => void sent.push(batches), intervalMs: 300 });
    const [running, exiting] = [files(), files()];
    relay.watch(1, running);
    relay.watch(2, exiting);
    appendFileSync(running.eventsPath, report(0, { loss: 1 }));
    appendFileSync(exiting.eventsPath, report(0, { loss: 2 }));
    relay.exited(2);
    await relay.settled(2, 5000);
    expect(sent.flat().map((batch) => batch.attemptId)).toEqual([2]);
    // The timer's pass reads every running attempt's file.
    await until(() => sent.flat().some((batch) => batch.attemptId === 1), "the running attempt's points");
    relay.stop();
  });

  it("lets an attempt without an events file go once it exits", async () => {
    const paths = files();
    const relay = new PointRelay({ send: async () => undefined, intervalMs: 10 });
    relay.watch(3, paths);
    relay.exited(3);
    await relay.settled(3, 5000);
    await relay.drain(1000);
  });

  it("sends smaller requests after a 413, and stops sending (dropping nothing from the file) after a 404", async () => {
    const paths = files();
    const metrics = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`metric_number_${i}`, i / 7]));
    let text = "";
    for (let step = 0; step < 1000; step++) text += report(step, metrics);
    writeFileSync(paths.eventsPath, text);
    const refused: number[] = [];
    let points = 0;
    const relay = new PointRelay({
      send: async (batches) => {
        const size = Buffer.byteLength(JSON.stringify({ attempts: batches }));
        if (size > 100 * 1024) {
          refused.push(size);
          throw new HttpError(413, "http://x", "POST /points", "request body too large");
        }
        for (const batch of batches) points += batch.points.length;
      },
      intervalMs: 10,
    });
    relay.watch(1, paths);
    relay.exited(1);
    await relay.settled(1, 10_000);
    relay.stop();
    expect(refused.length).toBeGreaterThan(0);
    expect(points).toBe(1000);

    const old = files();
    writeFileSync(old.eventsPath, report(0, { loss: 1 }));
    const warnings: string[] = [];
    let calls = 0;
    const legacy = new PointRelay({
      send: async () => {
        calls++;
        throw new HttpError(404, "http://x", "POST /points", "no such endpoint");
      },
      intervalMs: 10,
      warn: (message) => warnings.push(message),
    });
    legacy.watch(2, old);
    await until(() => warnings.length > 0, "the warning");
    appendFileSync(old.eventsPath, report(1, { loss: 0.5 }));
    legacy.exited(2);
    await legacy.settled(2, 5000);
    legacy.stop();
    expect(calls).toBe(1);
    expect(warnings).toEqual([expect.stringContaining("does not take live metrics")]);
    expect(readFileSync(old.eventsPath, "utf8")).toBe(report(0, { loss: 1 }) + report(1, { loss: 0.5 }));
  });
});
