import { describe, logger, type Warn } from "../log/logger.js";
import type { ChannelEvent } from "../protocol/http.js";
import { type CoordinatorClient, isAbort, sleep, UnauthorizedError } from "./httpClient.js";

export interface ChannelOptions {
  agentId: string;
  onEvent: (event: ChannelEvent) => void;
  /** Ends the channel (closing the connection, which tells the coordinator the agent is gone). */
  signal: AbortSignal;
  /** Notices about a channel that dropped. (Default: stderr) */
  warn?: Warn;
  /** Called when the coordinator rejects the token; the channel then ends. */
  onFatal?: (error: UnauthorizedError) => void;
  /** First wait before reconnecting; doubles up to 10 s while connections keep failing. (Default: 500) */
  minBackoffMs?: number;
}

/**
 * Holds `GET /channel` open for the agent's lifetime and passes on its events; reconnects with
 * backoff (through the client's failover) whenever the connection drops. Resolves when `signal`
 * aborts.
 */
export async function holdChannel(client: CoordinatorClient, options: ChannelOptions): Promise<void> {
  const log = logger("agent", options.warn);
  const minBackoff = options.minBackoffMs ?? 500;
  let failures = 0;
  while (!options.signal.aborted) {
    const openedAt = Date.now();
    try {
      const response = await client.open(`/channel?agentId=${encodeURIComponent(options.agentId)}`, {
        signal: options.signal,
      });
      await readEvents(response, options.onEvent);
      if (options.signal.aborted) return;
      // A connection that lived a while was fine: reconnect quickly.
      if (Date.now() - openedAt > 10_000) failures = 0;
    } catch (error) {
      if (options.signal.aborted || isAbort(error)) return;
      if (error instanceof UnauthorizedError) {
        options.onFatal?.(error);
        return;
      }
      log.warn(`the coordinator's event channel failed (${describe(error)}); reconnecting`);
    }
    const wait = Math.min(minBackoff * 2 ** Math.min(failures, 30), 10_000);
    failures++;
    await sleep(wait, options.signal).catch(() => undefined);
  }
}

/** Reads server-sent events until the stream ends: `data:` lines, an event per blank line. */
async function readEvents(response: Response, onEvent: (event: ChannelEvent) => void): Promise<void> {
  if (!response.body) return;
  const decoder = new TextDecoder();
  let buffer = "";
  let data: string[] = [];
  let name = "";
  const dispatch = (): void => {
    if (data.length > 0) {
      const event = parseEvent(data.join("\n"), name);
      if (event) onEvent(event);
    }
    data = [];
    name = "";
  };
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let newline = buffer.search(/\r\n|\r|\n/);
    while (newline >= 0) {
      // A "\r" that ends the buffer may be the first half of a "\r\n" still on its way.
      if (newline === buffer.length - 1 && buffer.endsWith("\r")) break;
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
      if (line === "") dispatch();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      else if (line.startsWith("event:")) name = line.slice(6).trim();
      // ":" comments (keep-alives), "id:" and "retry:" need nothing.
      newline = buffer.search(/\r\n|\r|\n/);
    }
  }
}

function parseEvent(data: string, name: string): ChannelEvent | null {
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    return null; // not JSON: nothing this agent understands
  }
  if (value === null || typeof value !== "object") return null;
  const event = value as { type?: unknown };
  if (typeof event.type !== "string" && name) return { ...event, type: name } as ChannelEvent;
  return typeof event.type === "string" ? (event as ChannelEvent) : null;
}
