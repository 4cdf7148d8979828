/** The automatic allocator's decisions (`serve --slurm`), case by case: a pure function of one look. */
import { describe, expect, it } from "vitest";
import { parseTimeLeft } from "../src/agent/allocationEnd.js";
import { type JobView, MAX_PER_SUBMISSION, planAllocation } from "../src/slurm/allocationPlan.js";

const limits = { maxJobs: 4, minJobs: 0, slotsPerJob: 2 };
const job = (id: string, phase: JobView["phase"], connected = false): JobView => ({ id, phase, connected });

describe("planAllocation", () => {
  it("submits for the tasks no connected or queued agent can take, in whole allocations", () => {
    expect(planAllocation({ claimable: 3, idleSlots: 0, finished: false, jobs: [] }, limits)).toEqual({
      submit: 2,
      cancel: [],
    });
    // One pending allocation (2 slots) and one idle slot cover 3 of 5.
    const jobs = [job("7_0", "pending")];
    expect(planAllocation({ claimable: 5, idleSlots: 1, finished: false, jobs }, limits).submit).toBe(1);
    // Running and connected: its slots are busy (or counted as idle): no supply of its own.
    expect(
      planAllocation(
        { claimable: 2, idleSlots: 0, finished: false, jobs: [job("7_0", "running", true)] },
        limits,
      ).submit,
    ).toBe(1);
    // Running but its agent not yet connected: it is about to take 2.
    expect(
      planAllocation({ claimable: 2, idleSlots: 0, finished: false, jobs: [job("7_0", "running")] }, limits)
        .submit,
    ).toBe(0);
  });

  it("never goes above --max-jobs, nor submits more than a small array at once", () => {
    const jobs = [job("1_0", "running", true), job("1_1", "running", true), job("1_2", "pending")];
    expect(planAllocation({ claimable: 100, idleSlots: 0, finished: false, jobs }, limits).submit).toBe(1);
    const wide = { ...limits, maxJobs: 1000 };
    expect(planAllocation({ claimable: 10_000, idleSlots: 0, finished: false, jobs: [] }, wide).submit).toBe(
      MAX_PER_SUBMISSION,
    );
    // Ending ones no longer count against the limit.
    const ending = [job("1_0", "ending"), job("1_1", "ending"), job("1_2", "ending"), job("1_3", "ending")];
    expect(planAllocation({ claimable: 2, idleSlots: 0, finished: false, jobs: ending }, limits).submit).toBe(
      1,
    );
  });

  it("keeps --min-jobs while unfinished, even with nothing to do", () => {
    const warm = { ...limits, minJobs: 2 };
    expect(planAllocation({ claimable: 0, idleSlots: 0, finished: false, jobs: [] }, warm)).toEqual({
      submit: 2,
      cancel: [],
    });
    const two = [job("3_0", "pending"), job("3_1", "pending")];
    expect(planAllocation({ claimable: 0, idleSlots: 0, finished: false, jobs: two }, warm)).toEqual({
      submit: 0,
      cancel: [],
    });
  });

  it("cancels pending allocations the queue no longer needs, newest first", () => {
    const jobs = [
      job("5_0", "running", true),
      job("5_1", "pending"),
      job("6_0", "pending"),
      job("6_1", "pending"),
    ];
    // 1 task waits; 6 slots are on their way: two whole allocations are spare.
    expect(planAllocation({ claimable: 1, idleSlots: 0, finished: false, jobs }, limits)).toEqual({
      submit: 0,
      cancel: ["6_1", "6_0"],
    });
    // Not below --min-jobs.
    expect(
      planAllocation({ claimable: 0, idleSlots: 0, finished: false, jobs }, { ...limits, minJobs: 3 }),
    ).toEqual({
      submit: 0,
      cancel: ["6_1"],
    });
  });

  it("once the sweep has finished, submits nothing and cancels every pending allocation", () => {
    const jobs = [job("5_0", "running", true), job("5_1", "pending"), job("6_0", "pending")];
    expect(
      planAllocation({ claimable: 0, idleSlots: 0, finished: true, jobs }, { ...limits, minJobs: 4 }),
    ).toEqual({
      submit: 0,
      cancel: ["6_0", "5_1"],
    });
  });
});

describe("parseTimeLeft (squeue %L)", () => {
  it("reads SLURM's forms, and nothing else", () => {
    expect(parseTimeLeft("0:45")).toBe(45_000);
    expect(parseTimeLeft("12:30")).toBe(750_000);
    expect(parseTimeLeft("1:02:03")).toBe(3_723_000);
    expect(parseTimeLeft("2-00:00:01")).toBe(172_801_000);
    expect(parseTimeLeft("UNLIMITED")).toBeNull();
    expect(parseTimeLeft("NOT_SET")).toBeNull();
    expect(parseTimeLeft("")).toBeNull();
  });
});
