import { spawn } from "node:child_process";
import { describe } from "../log/logger.js";
import { redactUrl } from "../sweep/notifySetting.js";
import type { NotifyEntry } from "../sweep/types.js";

// One delivery of one notification to one `notify:` entry: a JSON POST to a webhook, or a command
// run with the event in its environment. Every way it can go wrong ends in a short, one-line
// error that never holds the webhook's URL, within a time limit: a slow or hostile endpoint can
// delay a notification, never the coordinator.

/** What a webhook gets (and a command in LABSWEEP_EVENT_JSON). */
export interface NotifyBody {
  /** The idempotency key: the same for every resend of one notification. */
  id: string;
  event: string;
  /** One human-readable line: Slack shows `text`, Discord `content`. */
  text: string;
  content: string;
  [field: string]: unknown;
}

export type Delivery =
  | { ok: true }
  /** `permanent`: no retry can help (a 4xx answer other than 408/425/429). */
  | { ok: false; error: string; permanent: boolean };

/** Limits of one delivery. */
export interface DeliveryLimits {
  /** A webhook's whole exchange, answer included. (Default: 10 s) */
  webhookTimeoutMs?: number;
  /** A command's run; then its process group is killed. (Default: 30 s) */
  commandTimeoutMs?: number;
  /** Ends the delivery early, as a failure: its sender is shutting down. (Default: none) */
  signal?: AbortSignal;
}

/** What a delivery reads of an answer or a command's output: enough for one line of error. */
const OUTPUT_LIMIT = 4096;
/** How much of that an error line shows. */
const ERROR_LINE_LIMIT = 200;

export function deliver(
  entry: NotifyEntry,
  body: NotifyBody,
  limits: DeliveryLimits = {},
): Promise<Delivery> {
  if (entry.webhook !== undefined)
    return postWebhook(entry.webhook, body, limits.webhookTimeoutMs ?? 10_000, limits.signal);
  return runCommand(entry, body, limits.commandTimeoutMs ?? 30_000, limits.signal);
}

async function postWebhook(
  url: string,
  body: NotifyBody,
  timeoutMs: number,
  stop: AbortSignal | undefined,
): Promise<Delivery> {
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = stop ? AbortSignal.any([timeout, stop]) : timeout;
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", "user-agent": "labsweep", "idempotency-key": body.id },
      body: JSON.stringify(body),
      signal,
    });
    // Read a little of the answer (for the error line) and drop the rest: a body may be endless.
    const answer = await readCapped(response.body, OUTPUT_LIMIT);
    if (response.ok) return { ok: true };
    const status = response.status;
    const permanent = status >= 400 && status < 500 && ![408, 425, 429].includes(status);
    return { ok: false, error: oneLine(`HTTP ${status}${answer ? `: ${answer}` : ""}`, url), permanent };
  } catch (error) {
    const why = stop?.aborted
      ? "stopped: labsweep is shutting down"
      : timeout.aborted
        ? `no answer within ${timeoutMs / 1000} s`
        : describe(error);
    return { ok: false, error: oneLine(why, url), permanent: false };
  }
}

async function readCapped(stream: ReadableStream<Uint8Array> | null, limit: number): Promise<string> {
  if (!stream) return "";
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (size < limit) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.byteLength;
  }
  await reader.cancel().catch(() => undefined);
  return Buffer.concat(chunks).subarray(0, limit).toString("utf8");
}

/**
 * Runs the entry's command with `sh -c` in its config's dir. The event travels in the
 * environment only, never spliced into the command line: a parameter or an error line is data,
 * not shell. Its output is kept only for the error line, and no more than OUTPUT_LIMIT of it.
 */
function runCommand(
  entry: NotifyEntry,
  body: NotifyBody,
  timeoutMs: number,
  stop: AbortSignal | undefined,
): Promise<Delivery> {
  return new Promise((resolve) => {
    const child = spawn("sh", ["-c", entry.command ?? ""], {
      cwd: entry.baseDir,
      env: { ...inheritedEnv(), ...eventEnv(body) },
      stdio: ["ignore", "pipe", "pipe"],
      // Its own process group: a timeout kills whatever it started too.
      detached: true,
    });
    let output = "";
    const keep = (chunk: Buffer): void => {
      output = (output + chunk.toString("utf8")).slice(-OUTPUT_LIMIT);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, timeoutMs);
    const onStop = (): void => killGroup(child.pid);
    stop?.addEventListener("abort", onStop, { once: true });
    const settle = (delivery: Delivery): void => {
      clearTimeout(timer);
      stop?.removeEventListener("abort", onStop);
      resolve(delivery);
    };
    child.once("error", (error) => settle({ ok: false, error: oneLine(describe(error)), permanent: false }));
    child.once("close", (code, signal) => {
      if (code === 0 && !timedOut) return settle({ ok: true });
      const how = timedOut
        ? `did not finish within ${timeoutMs / 1000} s`
        : code !== null
          ? `exit code ${code}`
          : `killed by ${signal}`;
      const last = output.trim().split("\n").pop() ?? "";
      settle({ ok: false, error: oneLine(`command ${how}${last ? `: ${last}` : ""}`), permanent: false });
    });
  });
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch (error) {
    // ESRCH: the group is already gone, which is what the kill was for.
    if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
  }
}

/**
 * The coordinator's environment less labsweep's secrets, as a task gets it (runProcess.ts
 * taskEnv): tokens and LABSWEEP_STORE, whose PostgreSQL URL may hold the ledger's password.
 */
function inheritedEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of Object.keys(env))
    if ((key.startsWith("LABSWEEP_") && key.includes("TOKEN")) || key === "LABSWEEP_STORE") delete env[key];
  return env;
}

/** The event as environment variables a command reads (`$LABSWEEP_EVENT`, …). */
export function eventEnv(body: NotifyBody): Record<string, string> {
  const task = body.task as { id?: number } | undefined;
  const env: Record<string, string> = {
    LABSWEEP_EVENT: body.event,
    LABSWEEP_EVENT_ID: body.id,
    LABSWEEP_EVENT_TEXT: body.text,
    LABSWEEP_EVENT_JSON: JSON.stringify(body),
  };
  if (typeof body.phase === "string") env.LABSWEEP_PHASE = body.phase;
  if (task?.id !== undefined) env.LABSWEEP_TASK_ID = String(task.id);
  const sweep = body.sweep as { name?: string } | undefined;
  if (sweep?.name) env.LABSWEEP_SWEEP = sweep.name;
  // An environment value cannot hold a NUL byte (spawn would throw).
  for (const key of Object.keys(env)) env[key] = (env[key] as string).replaceAll("\0", "");
  return env;
}

/** An error as one short line of plain text, with a webhook's URL (and its token) redacted. */
function oneLine(text: string, url?: string): string {
  let redacted = text;
  if (url) for (const form of [url, new URL(url).href]) redacted = redacted.split(form).join(redactUrl(url));
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it removes
  const flat = redacted.replace(/[\u0000-\u001f\u007f]+/g, " ").trim();
  return flat.length > ERROR_LINE_LIMIT ? `${flat.slice(0, ERROR_LINE_LIMIT)}…` : flat;
}
