import { dirname, resolve } from "node:path";
import { didYouMean } from "./closest.js";
import { describeValue, endSentence } from "./errorWording.js";
import {
  DEFAULT_MIN_FINISHED,
  type FileSettingsInput,
  NOTIFY_EVENTS,
  NOTIFY_KEYS,
  webhookProblem,
} from "./schema.js";
import type { NotifyEntry } from "./types.js";
import type { YamlSource } from "./yamlSource.js";

// The `notify:` setting: its entries after validation, what is wrong with an invalid one, and how
// a webhook URL is shown (it often carries a token in its path or query).

const ON_FORM = `expected one of ${NOTIFY_EVENTS.join(", ")}, or the mapping {failure_rate: 0.2} (optionally with min_finished: N)`;
const ENTRY_FORM = "an entry such as `- on: task_failed` with `webhook: https://…` or `command: …`";

/** The validated entries of one file's `notify:` list, each with its place. */
export function toNotifyEntries(source: YamlSource, settings: FileSettingsInput): NotifyEntry[] {
  const baseDir = dirname(resolve(source.file));
  return (settings.notify ?? []).map((input, index) => ({
    ...(typeof input.on === "string"
      ? { on: input.on }
      : {
          on: "failure_rate" as const,
          threshold: input.on.failure_rate,
          minFinished: input.on.min_finished ?? DEFAULT_MIN_FINISHED,
        }),
    ...(input.webhook !== undefined ? { webhook: input.webhook } : {}),
    ...(input.command !== undefined ? { command: input.command } : {}),
    file: source.file,
    line: source.placeOf(["notify", index], "value").line,
    baseDir,
  }));
}

/** Where inside a `notify:` value it is wrong, and why. */
interface NotifyProblem {
  path: Array<string | number>;
  message: string;
  at: "key" | "value";
}

/** What is wrong with a `notify:` value zod rejected, and where inside it (relative to `notify`). */
export function notifyProblem(value: unknown): NotifyProblem {
  if (!Array.isArray(value))
    return { path: [], message: `expected a list of entries; got ${describeValue(value)}`, at: "value" };
  for (const [index, entry] of value.entries()) {
    const problem = entryProblem(entry);
    if (problem) return { ...problem, path: [index, ...problem.path] };
  }
  return { path: [], message: "has an invalid entry", at: "value" };
}

function entryProblem(entry: unknown): NotifyProblem | null {
  if (entry === null || typeof entry !== "object" || Array.isArray(entry))
    return { path: [], message: `expected ${ENTRY_FORM}; got ${describeValue(entry)}`, at: "value" };
  const record = entry as Record<string, unknown>;
  const keys = Object.keys(NOTIFY_KEYS);
  const unknown = Object.keys(record).find((key) => !keys.includes(key));
  if (unknown !== undefined) {
    const listing = Object.entries(NOTIFY_KEYS)
      .map(([name, fallback]) => `${name} (${fallback})`)
      .join(", ");
    const hint = didYouMean(unknown, keys);
    return {
      path: [unknown],
      message: `unknown key "${unknown}"${endSentence(hint)}Allowed keys: ${listing}`,
      at: "key",
    };
  }
  if (!("on" in record)) return { path: [], message: `needs \`on:\`: ${ON_FORM}`, at: "value" };
  const on = onProblem(record.on);
  if (on) return { ...on, path: ["on", ...on.path] };
  const hasWebhook = record.webhook !== undefined;
  const hasCommand = record.command !== undefined;
  if (hasWebhook === hasCommand)
    return {
      path: [],
      message: `needs exactly one of webhook and command; got ${hasWebhook ? "both" : "neither"} (write one entry per destination)`,
      at: "value",
    };
  if (hasWebhook) {
    const url = record.webhook;
    const problem =
      typeof url === "string" ? webhookProblem(url) : `expected a URL; got ${describeValue(url)}`;
    if (problem)
      // The URL itself is not repeated: webhook URLs often carry a token.
      return { path: ["webhook"], message: `${problem} (expected http(s)://host/path)`, at: "value" };
  }
  if (hasCommand && typeof record.command !== "string")
    return {
      path: ["command"],
      message: `expected a string; got ${describeValue(record.command)}`,
      at: "value",
    };
  if (record.command === "") return { path: ["command"], message: "is empty", at: "value" };
  return null;
}

function onProblem(on: unknown): NotifyProblem | null {
  const events = NOTIFY_EVENTS as readonly string[];
  if (typeof on === "string") {
    if (events.includes(on)) return null;
    const hint = on === "failure_rate" ? " — write on: {failure_rate: 0.2}" : didYouMean(on, events);
    return { path: [], message: `${ON_FORM}; got "${on}"${hint}`, at: "value" };
  }
  if (on === null || typeof on !== "object" || Array.isArray(on))
    return { path: [], message: `${ON_FORM}; got ${describeValue(on)}`, at: "value" };
  const keys = Object.keys(on);
  const allowed = ["failure_rate", "min_finished"];
  const other = keys.find((key) => !allowed.includes(key));
  if (other !== undefined || !keys.includes("failure_rate"))
    return {
      path: other === undefined ? [] : [other],
      message: `${ON_FORM}; got ${other === undefined ? "no failure_rate" : `key "${other}"${didYouMean(other, allowed)}`}`,
      at: other === undefined ? "value" : "key",
    };
  const { failure_rate: rate, min_finished: least } = on as { failure_rate: unknown; min_finished?: unknown };
  if (least !== undefined && !(typeof least === "number" && Number.isInteger(least) && least >= 1))
    return {
      path: ["min_finished"],
      message: `min_finished is a number of finished tasks (a whole number ≥ 1); got ${describeValue(least)}`,
      at: "value",
    };
  if (typeof rate === "number" && rate > 0 && rate <= 1) return null;
  const percent = typeof rate === "number" && rate > 1 && rate <= 100 ? ` (${rate / 100}?)` : "";
  return {
    path: ["failure_rate"],
    message: `failure_rate is a fraction of finished tasks in (0, 1], e.g. 0.2 for 20%; got ${describeValue(rate)}${percent}`,
    at: "value",
  };
}

/**
 * A webhook URL as logs, status and errors may show it: scheme and host only, `/…` for a path
 * or query (Slack, Discord and ntfy put their secret there), never a user or password.
 */
export function redactUrl(url: string): string {
  if (!URL.canParse(url)) return "(an invalid URL)";
  const parsed = new URL(url);
  const rest = (parsed.pathname !== "/" && parsed.pathname !== "") || parsed.search ? "/…" : "";
  return `${parsed.protocol}//${parsed.host}${rest}`;
}

/** How messages name an entry: its place and destination, never a full URL. */
export function describeEntry(entry: NotifyEntry): string {
  const on = entry.on === "failure_rate" ? `failure_rate ${entry.threshold}` : entry.on;
  const to = entry.webhook !== undefined ? `webhook ${redactUrl(entry.webhook)}` : "command";
  return `notify entry ${entry.file}:${entry.line} (on ${on}, ${to})`;
}
