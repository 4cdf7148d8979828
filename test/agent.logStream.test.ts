/**
 * Streaming a running task's log to the coordinator: new bytes every period at their byte
 * offsets, chunks cut between UTF-8 characters, a per-attempt cap that keeps the tail, and the
 * unsent end handed to the finish report.
 */
import { appendFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type ChunkVerdict, incompleteTail, LogStream, logPieces } from "../src/agent/logStream.js";
import { tempDir } from "./helpers/cli.js";

interface Sent {
  offset: number;
  text: string;
}

function streamOf(logPath: string, options: { capBytes?: number; verdict?: () => ChunkVerdict } = {}) {
  const sent: Sent[] = [];
  const stream = new LogStream({
    logPath,
    periodMs: 20,
    capBytes: options.capBytes,
    send: async (offset, text) => {
      sent.push({ offset, text });
      return options.verdict?.() ?? "ok";
    },
  });
  return { stream, sent };
}

const tick = (ms = 120) => new Promise((resolve) => setTimeout(resolve, ms));

describe("log streaming", () => {
  it("sends what is new each period, at its byte offset, and the rest at the end", async () => {
    const path = join(tempDir(), "attempt-1.log");
    const { stream, sent } = streamOf(path);
    stream.start();
    await tick(); // no file yet: nothing to send
    expect(sent).toEqual([]);
    writeFileSync(path, "épоch 1\n"); // two- and multi-byte characters
    await tick();
    appendFileSync(path, "epoch 2\n");
    await tick();
    appendFileSync(path, "done\n");
    const rest = await stream.finish();
    expect(sent).toEqual([
      { offset: 0, text: "épоch 1\n" },
      { offset: Buffer.byteLength("épоch 1\n"), text: "epoch 2\n" },
    ]);
    expect(rest).toEqual({ offset: Buffer.byteLength("épоch 1\nepoch 2\n"), text: "done\n" });
  });

  it("never splits a character between chunks", async () => {
    const path = join(tempDir(), "attempt-1.log");
    const euro = Buffer.from("€", "utf8"); // 3 bytes
    writeFileSync(path, Buffer.concat([Buffer.from("a"), euro.subarray(0, 2)]));
    const { stream, sent } = streamOf(path);
    stream.start();
    await tick();
    appendFileSync(path, Buffer.concat([euro.subarray(2), Buffer.from("b")]));
    await tick();
    await stream.finish();
    expect(sent).toEqual([
      { offset: 0, text: "a" },
      { offset: 1, text: "€b" },
    ]);
  });

  it("caps what is sent per attempt, keeping the tail, and leaves the final tail for the report", async () => {
    const path = join(tempDir(), "attempt-1.log");
    writeFileSync(path, `${"x".repeat(1000)}TAIL-1`);
    const { stream, sent } = streamOf(path, { capBytes: 100 });
    stream.start();
    await tick();
    expect(sent).toHaveLength(1);
    expect(sent[0]?.offset).toBe(906); // the last 100 bytes
    expect(sent[0]?.text.endsWith("TAIL-1")).toBe(true);
    appendFileSync(path, `${"y".repeat(500)}TAIL-2`);
    await tick();
    expect(sent).toHaveLength(1); // the cap is spent: nothing more while it runs
    const rest = await stream.finish();
    expect(rest?.text).toHaveLength(100);
    expect(rest?.text.endsWith("TAIL-2")).toBe(true);
    expect(rest?.offset).toBe(1512 - 100);
  });

  it("stops when the coordinator wants no more of this attempt's log", async () => {
    const path = join(tempDir(), "attempt-1.log");
    writeFileSync(path, "one\n");
    const { stream, sent } = streamOf(path, { verdict: () => "stop" });
    stream.start();
    await tick();
    appendFileSync(path, "two\n");
    await tick();
    expect(sent).toEqual([{ offset: 0, text: "one\n" }]);
    await stream.finish();
  });

  it("sends a chunk again when sending failed", async () => {
    const path = join(tempDir(), "attempt-1.log");
    writeFileSync(path, "one\n");
    let calls = 0;
    const sent: Sent[] = [];
    const stream = new LogStream({
      logPath: path,
      periodMs: 20,
      send: async (offset, text) => {
        if (++calls === 1) throw new Error("ECONNREFUSED");
        sent.push({ offset, text });
        return "ok";
      },
    });
    stream.start();
    await tick();
    expect(await stream.finish()).toBeUndefined();
    expect(sent).toEqual([{ offset: 0, text: "one\n" }]);
  });
});

describe("log pieces", () => {
  it("splits a chunk into byte-bounded pieces at contiguous offsets, between characters", () => {
    const text = "ab€cd€€e";
    const pieces = logPieces({ offset: 10, text }, 4);
    expect(pieces.map((piece) => piece.text).join("")).toBe(text);
    let offset = 10;
    for (const piece of pieces) {
      expect(piece.offset).toBe(offset);
      expect(Buffer.byteLength(piece.text)).toBeLessThanOrEqual(4);
      offset += Buffer.byteLength(piece.text);
    }
    expect(logPieces({ offset: 0, text: "" }, 4)).toEqual([]);
  });

  it("knows an incomplete character at the end of a buffer", () => {
    const euro = Buffer.from("€");
    expect(incompleteTail(Buffer.from("abc"))).toBe(0);
    expect(incompleteTail(Buffer.concat([Buffer.from("a"), euro.subarray(0, 1)]))).toBe(1);
    expect(incompleteTail(Buffer.concat([Buffer.from("a"), euro.subarray(0, 2)]))).toBe(2);
    expect(incompleteTail(Buffer.concat([Buffer.from("a"), euro]))).toBe(0);
  });
});
