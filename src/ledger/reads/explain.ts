import type { AgentCapabilities } from "../../protocol/http.js";
import type { TaskState } from "../../protocol/interfaces.js";
import { type AgentOffer, offerFromCapabilities, type Shortfall, shortfall } from "../../protocol/offers.js";
import type { Db } from "../db.js";
import {
  type ExplainFacts,
  explainFacts,
  findTask,
  type PhaseFacts,
  type PhaseProgress,
} from "./explainFacts.js";
import { connectedAgentInfos } from "./machines.js";

export { TaskRefError } from "./explainFacts.js";

/**
 * Why a task is where it is, one code per cause. Settled or running: `succeeded`, `running`,
 * `failed`, `cancelled`, `inactive` (no loaded config lists it). Held: `stopped` (its phase failed
 * fast), `blocked` (a gate failed), `gate` (its phase waits for the phases it comes after),
 * `paused`, `backoff`. Claimable but not leased: `no_coordinator`, `no_agent`, `resources` (no
 * agent offers what it needs now), `queued` (tasks ahead of it).
 */
export type ExplainCode =
  | "succeeded"
  | "running"
  | "failed"
  | "cancelled"
  | "inactive"
  | "stopped"
  | "blocked"
  | "gate"
  | "paused"
  | "backoff"
  | "no_coordinator"
  | "no_agent"
  | "resources"
  | "queued";

/** One cause, in a sentence, with the command that lifts it where there is one. */
export interface ExplainReason {
  code: ExplainCode;
  text: string;
  /** A command to run, e.g. `labsweep resume --phase train`. */
  hint?: string;
  /** The phase it is about (gate, paused, stopped, blocked). */
  phase?: string;
  /** gate: the phases it waits for and how far along they are. */
  waitsFor?: PhaseProgress[];
  /** backoff: when it may be leased again (epoch ms). */
  until?: number;
  /** resources: what it needs and the best any agent offers. */
  shortfall?: Shortfall;
  /** queued: claimable tasks leased before it. */
  ahead?: number;
}

/** `labsweep explain`'s answer and `GET /tasks/:id/explain`'s body. */
export interface Explanation {
  task: { id: number; signature: string; phase: string; state: TaskState; params: Record<string, unknown> };
  /** Every cause that holds, the one that decides first: reasons[0].text is the answer. */
  reasons: ExplainReason[];
  /**
   * Whose offers resources were judged by: `live` (the coordinator's agents now), `registered`
   * (connected agents as they registered, read from the ledger), or null (none known).
   */
  offers: { source: "live" | "registered"; agents: AgentOffer[] } | null;
  /** When it was judged (epoch ms). */
  at: number;
}

/** What a task is judged by besides the ledger, as the process that asks knows it. */
export interface ExplainSources {
  /**
   * What agents offer now, from the coordinator that leases to them. (Default: the connected
   * agents in the ledger, as they registered)
   */
  offers?: AgentOffer[];
  /**
   * Whether a coordinator works on this ledger: true when one answers, false when none can be
   * (the state dir's lock is free), null when it cannot be told from here. (Default: null)
   */
  coordinator?: boolean | null;
}

export interface ExplainOptions extends ExplainSources {
  /** (Default: Date.now()) */
  now?: number;
}

/** Why task `ref` (an id, a signature or the start of one) is not running. */
export async function explainTask(db: Db, ref: string, options: ExplainOptions = {}): Promise<Explanation> {
  const now = options.now ?? Date.now();
  const facts = await explainFacts(db, await findTask(db, ref), now);
  const offers = options.offers
    ? { source: "live" as const, agents: options.offers }
    : { source: "registered" as const, agents: await registeredOffers(db, now) };
  return judge(facts, { now, offers, coordinator: options.coordinator ?? null });
}

async function registeredOffers(db: Db, now: number): Promise<AgentOffer[]> {
  return (await connectedAgentInfos(db)).map((info) =>
    offerFromCapabilities(JSON.parse(info) as AgentCapabilities, now),
  );
}

interface Judged {
  now: number;
  offers: NonNullable<Explanation["offers"]>;
  coordinator: boolean | null;
}

/** The explanation of the facts read: pure, so each cause is tested on its own. */
export function judge(facts: ExplainFacts, context: Judged): Explanation {
  const reasons = settled(facts, context.now) ?? held(facts, context.now);
  if (reasons.length === 0 || reasons.every((reason) => reason.code === "backoff"))
    reasons.push(...unleased(facts, context));
  const { id, signature, phase, state, params } = facts;
  return { task: { id, signature, phase, state, params }, reasons, offers: context.offers, at: context.now };
}

/** A task that will not wait for anything: done, running, failed, cancelled or dropped. */
function settled(facts: ExplainFacts, now: number): ExplainReason[] | null {
  const last = facts.last;
  if (facts.state === "succeeded") {
    const where = facts.host ? ` on ${facts.host}` : last ? "" : " (found complete in a results CSV)";
    const when = facts.finishedAt ? ` at ${time(facts.finishedAt, now)}` : "";
    return [{ code: "succeeded", text: `done: it succeeded${when}${where}` }];
  }
  if (facts.state === "running" && last) {
    const where = last.host ?? last.worker;
    const agent = last.host && last.worker !== last.host ? ` (agent ${last.worker})` : "";
    const text =
      last.pid === null
        ? `leased to ${where}${agent} at ${time(last.startedAt, now)} (attempt ${last.number}); it waits there for a slot`
        : `running on ${where}${agent} since ${time(last.startedAt, now)} (attempt ${last.number})`;
    return [{ code: "running", text }];
  }
  if (facts.state === "failed") {
    const error = last ? errorLine(last.error, last.exitCode) : "no attempt recorded";
    return [
      {
        code: "failed",
        text: `failed for good after ${plural(facts.attempts, "attempt")}: ${error}`,
        hint: `labsweep retry --failed --phase ${facts.phase}`,
        phase: facts.phase,
      },
      ...facts.phases.filter((phase) => phase.state === "stopped").map(stoppedReason),
    ];
  }
  if (facts.state === "cancelled") return [{ code: "cancelled", text: "cancelled: it will not run" }];
  if (!facts.active)
    return [
      { code: "inactive", text: "no loaded config lists it any more: kept in the ledger, it will not run" },
    ];
  return null;
}

/** What holds a pending (or blocked) task back whatever agents offer: gates, pause, backoff. */
function held(facts: ExplainFacts, now: number): ExplainReason[] {
  const reasons: ExplainReason[] = [];
  const open = facts.phases.some((phase) => phase.active && phase.state === "open");
  if (facts.state === "blocked" || !facts.runnable || !open) {
    for (const phase of facts.phases) {
      if (phase.state === "stopped") reasons.push(stoppedReason(phase));
      else if (phase.state === "blocked") reasons.push(blockedReason(phase));
      else if (phase.state === "waiting") reasons.push(gateReason(phase, facts.upstream));
    }
  }
  const declaring = facts.phases.find((phase) => phase.name === facts.phase);
  if (declaring?.paused && facts.state === "pending")
    reasons.push({
      code: "paused",
      text: `phase ${declaring.name} is paused: nothing of it starts`,
      hint: `labsweep resume --phase ${declaring.name}`,
      phase: declaring.name,
    });
  if (facts.state === "pending" && facts.notBefore > now) {
    const after = facts.last
      ? ` after attempt ${facts.last.number} (${errorLine(facts.last.error, facts.last.exitCode)})`
      : "";
    reasons.push({
      code: "backoff",
      text: `retry backoff${after}: not started before ${time(facts.notBefore, now)}`,
      until: facts.notBefore,
    });
  }
  return reasons;
}

function stoppedReason(phase: PhaseFacts): ExplainReason {
  return {
    code: "stopped",
    text: `phase ${phase.name} failed fast and is stopped${phase.reason ? `: ${phase.reason}` : ""}`,
    hint: `labsweep retry --failed --phase ${phase.name}`,
    phase: phase.name,
  };
}

function blockedReason(phase: PhaseFacts): ExplainReason {
  return {
    code: "blocked",
    text: `phase ${phase.name} is blocked${phase.reason ? `: ${phase.reason}` : ""}`,
    // The phases it comes after failed its gate: retrying their failures may let it pass.
    hint: phase.after.length > 0 ? `labsweep retry --failed --phase ${phase.after[0]}` : undefined,
    phase: phase.name,
  };
}

function gateReason(phase: PhaseFacts, upstream: PhaseProgress[]): ExplainReason {
  const waitsFor = upstream.filter(
    (up) => phase.after.includes(up.name) && (up.state !== "open" || up.settled < up.total),
  );
  const gate =
    phase.gate.kind === "all_succeeded"
      ? "all of them to succeed"
      : `${phase.gate.ratio * 100}% of them to succeed`;
  const progress = waitsFor
    .map(
      (up) =>
        `${up.name}: ${up.settled} of ${up.total} settled (${up.succeeded} succeeded, ${up.failed} failed)`,
    )
    .join("; ");
  return {
    code: "gate",
    text: `phase ${phase.name} runs after ${phase.after.join(", ")} and needs ${gate}; waiting for ${progress || "its gate to be judged"}`,
    phase: phase.name,
    waitsFor,
  };
}

/** Why a claimable task was not leased: no coordinator, no agent, no room, or tasks ahead. */
function unleased(facts: ExplainFacts, context: Judged): ExplainReason[] {
  const reasons: ExplainReason[] = [];
  const { offers } = context;
  if (context.coordinator === false)
    reasons.push({
      code: "no_coordinator",
      text: "no coordinator is working on this ledger: nothing is leased until one starts",
      hint: "labsweep run CONFIG… (or labsweep serve and agents)",
    });
  else if (offers.agents.length === 0 && (offers.source === "live" || context.coordinator === null))
    // From the ledger alone, `labsweep run`'s own machine is no registered agent: only say so
    // of a coordinator's live view, or when no coordinator is known to work here.
    reasons.push({
      code: "no_agent",
      text:
        offers.source === "live"
          ? "no agent is connected to the coordinator"
          : "no connected agent is registered in the ledger",
      hint: "labsweep agent --server URL",
    });
  else if (offers.agents.length > 0) {
    const short = shortfall(
      facts.policy.resources,
      offers.agents,
      offers.source === "live" ? "now" : "at registration",
      facts.policy.timeoutMs,
    );
    if (short && short.resource !== "slots")
      reasons.push({ code: "resources", text: `${short.need}; ${short.best}`, shortfall: short });
    else if (short)
      reasons.push({ code: "queued", text: `${short.need}: ${short.best}`, ahead: facts.ahead });
  }
  // Its place in line matters once nothing else holds it: not while it waits out a backoff or
  // for a coordinator, an agent or a resource.
  if (reasons.some((reason) => reason.code !== "queued") || facts.notBefore > context.now) return reasons;
  const queued = reasons.find((reason) => reason.code === "queued");
  const ahead =
    facts.ahead === 0
      ? "it is next: the next agent with room for it leases it"
      : `${plural(facts.ahead, "claimable task")} ${facts.ahead === 1 ? "is" : "are"} leased before it (higher priority, or the same and a lower id)`;
  if (queued) queued.text += `; ${ahead}`;
  else reasons.push({ code: "queued", text: `queued: ${ahead}`, ahead: facts.ahead });
  return reasons;
}

/** The last line worth showing of an attempt's error. */
function errorLine(error: string | null, exitCode: number | null): string {
  const line = (error ?? "")
    .split("\n")
    .map((part) => part.trim())
    .filter(Boolean)
    .at(-1);
  if (line) return line.length > 200 ? `${line.slice(0, 199)}…` : line;
  return exitCode === null ? "no error recorded" : `exit code ${exitCode}`;
}

/** "2024-05-01T10:00:00.000Z (3 min ago)", or "(in 42 s)". */
function time(at: number, now: number): string {
  const seconds = Math.round((at - now) / 1000);
  const span = Math.abs(seconds);
  const words =
    span < 120 ? `${span} s` : span < 7200 ? `${Math.round(span / 60)} min` : `${Math.round(span / 3600)} h`;
  return `${new Date(at).toISOString()} (${seconds >= 0 ? `in ${words}` : `${words} ago`})`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}
