/**
 * Which failed attempts ran out of memory: each framework's message in the log's tail, the
 * kernel's OOM killer only when its count rose, and hostile logs read in bounded time.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { settledOutcome } from "../src/agent/attemptOutcome.js";
import {
  OOM_MESSAGES,
  OOM_TAIL_BYTES,
  oomKillsSince,
  oomMessageIn,
  oomMessageInLog,
  oomSignalOf,
} from "../src/agent/outOfMemory.js";
import { oomKillCount } from "../src/agent/procfs.js";
import { type ProcessExit, startProcess } from "../src/agent/runProcess.js";

const dir = mkdtempSync(join(tmpdir(), "labsweep-oom-"));
let logs = 0;
function log(text: string | Buffer): string {
  const path = join(dir, `log-${logs++}.txt`);
  writeFileSync(path, text);
  return path;
}

/** Real lines as each framework prints them (trimmed of addresses and sizes that vary). */
const LINES: Record<string, string> = {
  "CUDA out of memory":
    "RuntimeError: CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 7.79 GiB total capacity)",
  "torch.cuda.OutOfMemoryError":
    "torch.cuda.OutOfMemoryError: Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB",
  "torch.OutOfMemoryError": "torch.OutOfMemoryError: Tried to allocate 512.00 MiB on device xpu:0",
  "HIP out of memory": "torch.OutOfMemoryError: HIP out of memory. Tried to allocate 1.00 GiB",
  "MPS backend out of memory": "RuntimeError: MPS backend out of memory (MPS allocated: 17.00 GB)",
  "RESOURCE_EXHAUSTED: Out of memory":
    "jaxlib.xla_extension.XlaRuntimeError: RESOURCE_EXHAUSTED: Out of memory while trying to allocate 4294967296 bytes.",
  CUDA_ERROR_OUT_OF_MEMORY:
    "cupy_backends.cuda.api.driver.CUDADriverError: CUDA_ERROR_OUT_OF_MEMORY: out of memory",
  cudaErrorMemoryAllocation: "cupy.cuda.memory.OutOfMemoryError: cudaErrorMemoryAllocation: out of memory",
  CUBLAS_STATUS_ALLOC_FAILED:
    "RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
  "OOM when allocating tensor":
    "tensorflow.python.framework.errors_impl.ResourceExhaustedError: OOM when allocating tensor with shape[4096,4096]",
};

const failedExit = (over: Partial<ProcessExit> = {}): ProcessExit => ({
  exitCode: 1,
  signal: null,
  timedOut: false,
  stopped: false,
  stopReason: null,
  wallSeconds: 1,
  oomKills: 0,
  ...over,
});

describe("out-of-memory messages", () => {
  it("has a real line for every message in the table", () => {
    expect(Object.keys(LINES).sort()).toEqual([...OOM_MESSAGES].sort());
  });

  for (const [message, line] of Object.entries(LINES)) {
    it(`recognises ${message}`, () => {
      const traceback = `Traceback (most recent call last):\n  File "train.py", line 3, in <module>\n${line}\n`;
      expect(oomMessageIn(traceback)).toBe(message);
      expect(oomMessageInLog(log(traceback))).toBe(message);
    });
  }

  it("names the message nearest the end when several appear", () => {
    expect(oomMessageIn(`${LINES["OOM when allocating tensor"]}\n${LINES["CUDA out of memory"]}\n`)).toBe(
      "CUDA out of memory",
    );
  });

  it("ignores ordinary failures and host memory errors", () => {
    expect(oomMessageIn("ValueError: bad lr\nMemoryError\nKilled\n")).toBeNull();
    expect(oomMessageIn("cuda out of memory")).toBeNull(); // the frameworks' own spelling only
    expect(oomMessageInLog(join(dir, "no-such-log"))).toBeNull();
    expect(oomMessageInLog(dir)).toBeNull(); // a directory where the log should be
  });

  it("reads only the log's tail: a message earlier than that is not this failure's", () => {
    const early = `${LINES["CUDA out of memory"]}\n${"x".repeat(OOM_TAIL_BYTES)}\nValueError: later\n`;
    expect(oomMessageInLog(log(early))).toBeNull();
  });

  it("stays bounded on a hostile log: huge lines, binary, invalid UTF-8, NULs", () => {
    const huge = Buffer.alloc(32 * 1024 * 1024, 0x41); // one 32 MiB line
    const binary = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 131 + 7) % 256));
    const ending = Buffer.from(`\0\xff\xfe${LINES["RESOURCE_EXHAUSTED: Out of memory"]}\0`, "latin1");
    const path = log(Buffer.concat([huge, binary, ending]));
    expect(oomMessageInLog(path)).toBe("RESOURCE_EXHAUSTED: Out of memory");
    expect(oomMessageInLog(log(Buffer.concat([huge, binary])))).toBeNull();
  });
});

describe("the kernel's OOM killer", () => {
  it("reads a count here, or says it cannot", () => {
    const count = oomKillCount();
    expect(count === null || (Number.isInteger(count) && count >= 0)).toBe(true);
  });

  it("is looked for only after a SIGKILL (or a shell's 137)", () => {
    expect(oomKillsSince(0, { exitCode: 1, signal: null })).toBeUndefined();
    expect(oomKillsSince(null, { exitCode: null, signal: "SIGKILL" })).toBeNull();
    const now = oomKillCount();
    if (now !== null) expect(oomKillsSince(now, { exitCode: 137, signal: null })).toBeGreaterThanOrEqual(0);
  });

  it("a real process SIGKILLed by someone else is no OOM unless the count rose", async () => {
    const logPath = log("");
    const child = startProcess({
      command: "echo started; kill -KILL $$",
      cwd: dir,
      env: process.env,
      logPath,
      timeoutMs: null,
    });
    const exit = await child.exited;
    expect(exit.signal ?? exit.exitCode).toMatch(/SIGKILL|137/);
    const outcome = settledOutcome(exit, join(dir, "none.json"), { timeoutMs: null }, { logPath });
    if (exit.oomKills === null)
      expect(outcome).toMatchObject({ kind: "failed", error: expect.stringContaining("likely") });
    else if (exit.oomKills === 0)
      expect(outcome).toMatchObject({ kind: "failed", error: "killed by SIGKILL" });
  });

  it("counts an unsent SIGKILL only when the OOM kill count rose", () => {
    const quiet = log("training...\n");
    expect(oomSignalOf({ exitCode: null, signal: "SIGKILL" }, quiet, 1)).toEqual({ source: "kernel" });
    expect(oomSignalOf({ exitCode: 137, signal: null }, quiet, 2)).toEqual({ source: "kernel" });
    expect(oomSignalOf({ exitCode: null, signal: "SIGKILL" }, quiet, 0)).toBeNull();
    expect(oomSignalOf({ exitCode: null, signal: "SIGKILL" }, quiet, null)).toBeNull();
    expect(oomSignalOf({ exitCode: 1, signal: null }, quiet, 3)).toBeNull();
  });
});

describe("an attempt's outcome", () => {
  const result = join(dir, "no-result.json");

  it("is oom, saying which message, when the log shows one", () => {
    const path = log(`${LINES["CUDA out of memory"]}\n`);
    expect(settledOutcome(failedExit(), result, { timeoutMs: null }, { logPath: path })).toMatchObject({
      kind: "oom",
      oom: "CUDA out of memory",
      error: "out of GPU memory (CUDA out of memory)",
      exitCode: 1,
    });
  });

  it("is oom for a SIGKILL the OOM killer counted", () => {
    const path = log("epoch 1\n");
    const exit = failedExit({ exitCode: null, signal: "SIGKILL", oomKills: 1 });
    expect(settledOutcome(exit, result, { timeoutMs: null }, { logPath: path })).toMatchObject({
      kind: "oom",
      oom: "kernel",
      error: "killed by the kernel's OOM killer",
    });
  });

  it("calls an uncounted SIGKILL only likely the OOM killer, and a plain failure", () => {
    const path = log("epoch 1\n");
    const unreadable = failedExit({ exitCode: null, signal: "SIGKILL", oomKills: null });
    expect(settledOutcome(unreadable, result, { timeoutMs: null }, { logPath: path })).toMatchObject({
      kind: "failed",
      error: "killed by SIGKILL (likely the kernel's OOM killer; no OOM kill count could be read)",
    });
    const counted = failedExit({ exitCode: null, signal: "SIGKILL", oomKills: 0 });
    expect(settledOutcome(counted, result, { timeoutMs: null }, { logPath: path })).toMatchObject({
      kind: "failed",
      error: "killed by SIGKILL",
    });
  });

  it("leaves timeouts and stops as they are, whatever the log says", () => {
    const path = log(`${LINES["CUDA out of memory"]}\n`);
    expect(
      settledOutcome(failedExit({ timedOut: true }), result, { timeoutMs: 1000 }, { logPath: path }).kind,
    ).toBe("timeout");
    expect(
      settledOutcome(failedExit({ stopped: true }), result, { timeoutMs: null }, { logPath: path }).kind,
    ).toBe("interrupted");
  });
});
