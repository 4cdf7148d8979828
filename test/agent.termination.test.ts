/**
 * agent/termination.ts: a task that dies of a signal while its agent stops, or just before its
 * agent's own copy of that signal is handled, was stopped by the agent's stop (a scheduler
 * signals every process of a job at once); any other exit stays what it was.
 */
import { describe, expect, it } from "vitest";
import type { ProcessExit } from "../src/agent/runProcess.js";
import { AgentTermination } from "../src/agent/termination.js";

function exit(fields: Partial<ProcessExit>): ProcessExit {
  return {
    exitCode: null,
    signal: null,
    timedOut: false,
    stopped: false,
    stopReason: null,
    wallSeconds: 1,
    ...fields,
  };
}

describe("AgentTermination.attribute", () => {
  it("takes a signal death for the agent's stop when the agent is stopping", async () => {
    const termination = new AgentTermination();
    termination.begin("preempt");
    const attributed = await termination.attribute(exit({ signal: "SIGTERM" }));
    expect([attributed.stopped, attributed.stopReason]).toEqual([true, "preempt"]);
  });

  it("waits a moment for the agent's own stop when the task's signal came first", async () => {
    const termination = new AgentTermination();
    const pending = termination.attribute(exit({ exitCode: 143 })); // a shell's SIGTERM
    setTimeout(() => termination.begin("time_limit"), 50);
    const attributed = await pending;
    expect([attributed.stopped, attributed.stopReason]).toEqual([true, "time_limit"]);
  });

  it("leaves a signal death alone when the agent does not stop (after half a second)", async () => {
    const termination = new AgentTermination();
    const started = performance.now();
    const attributed = await termination.attribute(exit({ signal: "SIGSEGV" }));
    expect(attributed.stopped).toBe(false);
    expect(performance.now() - started).toBeGreaterThanOrEqual(450);
  });

  it("never touches an exit that is no signal death, a timeout or a stop of its own, and keeps the first reason", async () => {
    const termination = new AgentTermination();
    termination.begin("time_limit");
    termination.begin("preempt");
    for (const ended of [
      exit({ exitCode: 0 }),
      exit({ exitCode: 1 }),
      exit({ signal: "SIGTERM", timedOut: true, stopped: true, stopReason: "timeout" }),
      exit({ signal: "SIGTERM", stopped: true, stopReason: "abandoned" }),
    ])
      expect(await termination.attribute(ended)).toEqual(ended);
    expect((await termination.attribute(exit({ signal: "SIGKILL" }))).stopReason).toBe("time_limit");
  });
});
