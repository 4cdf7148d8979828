import type { Resources } from "../sweep/types.js";
import { allocate, allocateTask, type Capacity, gpusWanted, tagsFit, timeFits } from "./capacity.js";
import type { AgentCapabilities } from "./http.js";

/**
 * What one agent offers new tasks: its free capacity as it last asked for work, less what it was
 * given then (the coordinator's view, `coordinator/agentOffers.ts`), or — read from the ledger
 * with no coordinator to ask — what it registered with.
 */
export interface AgentOffer {
  agentId: string;
  name: string;
  host: string;
  capacity: Capacity;
  /** When the offer was made (epoch ms). */
  at: number;
}

/** Which resource a task asks for that no offer has, in the order an agent is checked. */
export type ShortResource = "time" | "tags" | "gpus" | "slots" | "cpus" | "gpu_memory" | "gpu_share";

/** Why no offer fits a task now: what it needs, and the best any agent offers of it. */
export interface Shortfall {
  resource: ShortResource;
  /** e.g. "needs 24 GB free GPU memory" */
  need: string;
  /** e.g. "largest free now: 11.5 GB on host b" */
  best: string;
}

/** The capacity an agent registered with, as an offer: every slot, CPU and GPU free. */
export function offerFromCapabilities(info: AgentCapabilities, at: number): AgentOffer {
  return {
    agentId: info.agentId,
    name: info.name,
    host: info.host,
    at,
    capacity: {
      freeSlots: info.slots,
      freeCpus: info.cpus,
      hasGpus: info.gpus.length > 0,
      tags: info.tags ?? [],
      gpus: info.gpus.map((gpu) => ({
        index: gpu.index,
        freeShare: 1,
        freeMemoryMiB: gpu.memoryFreeMiB ?? null,
      })),
    },
  };
}

/** One check an offer must pass, with how to word the need and the best offer of it. */
interface Check {
  resource: ShortResource;
  passes: (offer: AgentOffer) => boolean;
  need: string;
  /** The best of the offers left at this check, in words. */
  best: (offers: AgentOffer[]) => string;
}

/**
 * Null when some offer fits the task now (as `allocate` decides); else the first resource, in
 * the order an agent is checked (tags, GPUs, a slot, CPUs, GPU memory, a GPU's share), that no
 * offer still in the running has, with the best offered of it and where. `when` words how old
 * the offers are: "now", or "at registration" for offers read from the ledger.
 */
export function shortfall(
  resources: Resources,
  offers: AgentOffer[],
  when = "now",
  /** The task's timeout: an agent in a SLURM allocation offers only the time it has left. */
  timeoutMs: number | null = null,
): Shortfall | null {
  if (offers.length === 0)
    return { resource: "slots", need: "needs an agent", best: "no agent is connected" };
  if (offers.some((offer) => allocateTask({ resources, timeoutMs }, offer.capacity) !== null)) return null;
  let left = offers;
  for (const check of [timeCheck(timeoutMs, when), ...checks(resources, when)]) {
    const passing = left.filter(check.passes);
    if (passing.length === 0) return { resource: check.resource, need: check.need, best: check.best(left) };
    left = passing;
  }
  // Each check passes on some offer, yet none fits them all at once (GPUs shared differently).
  return {
    resource: "gpu_share",
    need: `needs ${resources.cpus} CPU${resources.cpus === 1 ? "" : "s"} and its GPUs together`,
    best: `no connected agent has them free together ${when}`,
  };
}

/** The time check: an allocation ending before the task's timeout would kill it. */
function timeCheck(timeoutMs: number | null, when: string): Check {
  const left = (offer: AgentOffer) => offer.capacity.timeLeftMs ?? Number.POSITIVE_INFINITY;
  return {
    resource: "time",
    passes: (offer) => timeFits(timeoutMs, offer.capacity),
    need: `needs ${Math.round((timeoutMs ?? 0) / 60_000)} min before its allocation ends (its timeout)`,
    best: (offers) =>
      `most time left ${when}: ${bestOf(offers, left, (ms) => `${Math.floor(ms / 60_000)} min`)}`,
  };
}

// A table of checks, each a few lines: one function keeps their order in one place.
function checks(resources: Resources, when: string): Check[] {
  const count = (offer: AgentOffer) => Math.ceil(gpusWanted(resources, offer.capacity.hasGpus));
  const needMiB = resources.gpuMemoryGb * 1024;
  const roomy = (offer: AgentOffer) =>
    offer.capacity.gpus.filter((gpu) => gpu.freeMemoryMiB === null || gpu.freeMemoryMiB >= needMiB);
  const wanted = resources.gpus ?? 1;
  // Policies stored before tags existed lack the field.
  const tags = resources.tags ?? [];
  return [
    {
      resource: "tags",
      passes: (offer) => tagsFit(resources, offer.capacity.tags),
      need: `needs tag${tags.length === 1 ? "" : "s"} ${tags.join(", ")}`,
      best: (offers) =>
        `connected agents offer ${listOf(offers, (o) => o.capacity.tags.join(", ") || "none")}`,
    },
    {
      resource: "gpus",
      passes: (offer) => offer.capacity.gpus.length >= count(offer),
      need: `needs ${plural(Math.ceil(wanted), "GPU")}`,
      best: (offers) => `most on one agent: ${bestOf(offers, (o) => o.capacity.gpus.length, String)}`,
    },
    {
      resource: "slots",
      passes: (offer) => offer.capacity.freeSlots >= 1,
      need: "needs a free slot",
      best: (offers) =>
        `every slot is busy ${when} (${offers.length} agent${offers.length === 1 ? "" : "s"})`,
    },
    {
      resource: "cpus",
      passes: (offer) => offer.capacity.freeCpus >= resources.cpus,
      need: `needs ${plural(resources.cpus, "CPU")}`,
      best: (offers) => `most free ${when}: ${bestOf(offers, (o) => o.capacity.freeCpus, String)}`,
    },
    {
      resource: "gpu_memory",
      passes: (offer) => roomy(offer).length >= count(offer),
      need: `needs ${gb(needMiB)} free GPU memory${wanted > 1 ? ` on each of ${Math.ceil(wanted)} GPUs` : ""}`,
      best: (offers) =>
        `${wanted > 1 ? `best ${when}` : `largest free ${when}`}: ${bestOf(offers, (o) => nthLargestFree(o, count(o)), gb)}`,
    },
    {
      resource: "gpu_share",
      passes: (offer) => allocate(resources, offer.capacity) !== null,
      need:
        wanted < 1 ? `needs ${wanted} of a GPU` : `needs ${plural(Math.ceil(wanted), "GPU")} no task holds`,
      best: (offers) =>
        `${wanted < 1 ? "largest share left" : "most idle GPUs"} ${when}: ${bestOf(offers, (o) => idleMeasure(o, wanted < 1), String)}`,
    },
  ];
}

/** The free memory of an offer's n-th roomiest GPU (MiB; unknown counts as none). */
function nthLargestFree(offer: AgentOffer, n: number): number {
  const free = offer.capacity.gpus.map((gpu) => gpu.freeMemoryMiB ?? 0).sort((a, b) => b - a);
  return free[Math.max(0, n - 1)] ?? 0;
}

/** The largest share left on one GPU (fractions), or how many GPUs are idle (whole GPUs). */
function idleMeasure(offer: AgentOffer, fraction: boolean): number {
  const shares = offer.capacity.gpus.map((gpu) => gpu.freeShare);
  if (fraction) return Math.max(0, ...shares.map((share) => Math.round(share * 100) / 100));
  return shares.filter((share) => share >= 1 - 1e-9).length;
}

/** "11.5 GB on host b": the offer with the largest value, and where it is. */
function bestOf(offers: AgentOffer[], value: (offer: AgentOffer) => number, format: (n: number) => string) {
  const best = [...offers].sort((a, b) => value(b) - value(a))[0];
  if (!best) return "none";
  return `${format(value(best))} on ${where(best)}`;
}

function listOf(offers: AgentOffer[], value: (offer: AgentOffer) => string): string {
  return offers.map((offer) => `${value(offer)} (${where(offer)})`).join("; ");
}

/** "host b", or "gpu-1 (host b)" for an agent whose --name is not its host. */
export function where(offer: Pick<AgentOffer, "name" | "host">): string {
  return offer.name && offer.name !== offer.host
    ? `${offer.name} (host ${offer.host})`
    : `host ${offer.host}`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** 24 GB, 11.5 GB: GiB as nvidia-smi users say GB. */
export function gb(mib: number): string {
  const value = mib / 1024;
  return `${Number.isInteger(value) ? value : value.toFixed(1)} GB`;
}
