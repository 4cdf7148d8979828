import http from "node:http";
import https from "node:https";
import { logger, type Warn } from "../log/logger.js";
import { API_PREFIX, type ErrorBody, type ErrorCode } from "../protocol/http.js";

/** The coordinator rejected the token (401). Not retried: a wrong token stays wrong. */
export class UnauthorizedError extends Error {
  override readonly name = "UnauthorizedError";
  constructor(
    readonly server: string,
    detail: string,
  ) {
    super(
      `the coordinator at ${server} rejected the token (401${detail ? `: ${detail}` : ""}); check LABSWEEP_TOKEN or --token-file`,
    );
  }
}

/** A 4xx answer other than 401 (400, 404, 409, 413): the request itself is wrong, so not retried. */
export class HttpError extends Error {
  override readonly name = "HttpError";
  constructor(
    readonly status: number,
    readonly server: string,
    readonly request: string,
    readonly detail: string,
    /** What the coordinator says the agent may act on (see ErrorCode); absent when nothing. */
    readonly code?: ErrorCode,
  ) {
    super(`${request} at ${server} failed with ${status}${detail ? `: ${detail}` : ""}`);
  }
}

export interface ClientOptions {
  /** Base URLs of the coordinator (e.g. http://head:8765); the next is tried when one fails. */
  servers: string[];
  token: string;
  /** First wait after a network error or 5xx; doubles per retry up to maxBackoffMs. (Default: 500) */
  minBackoffMs?: number;
  /** (Default: 10 000) */
  maxBackoffMs?: number;
  /** How long a request may take unless the call says otherwise. (Default: 15 s) */
  timeoutMs?: number;
  /** Where outage notices go, one line each. (Default: stderr) */
  warn?: Warn;
  /** How often an outage that goes on is reported again. (Default: 30 s) */
  remindEveryMs?: number;
}

export interface CallOptions {
  /** Retries after network errors and 5xx answers. (Default: unlimited, until `signal` aborts) */
  retries?: number;
  /** (Default: the client's timeoutMs) */
  timeoutMs?: number;
  /** Aborts the request and any wait between retries. */
  signal?: AbortSignal;
}

/**
 * The coordinator's HTTP API as seen from an agent: bearer token, JSON, timeouts, and retries
 * with backoff (0.5 s doubling to 10 s) over network errors and 5xx answers, each retry going to
 * the next server of the list (failover). A 401 throws UnauthorizedError, other 4xx HttpError.
 * Outages are reported once when they start, every 30 s while they last, and when they end.
 */
export class CoordinatorClient {
  private current = 0;
  private outage: { since: number; noticed: number } | null = null;
  /** Requests waiting out a backoff: woken when another request gets through. */
  private readonly retrying = new Set<() => void>();
  private readonly servers: string[];

  constructor(private readonly options: ClientOptions) {
    if (options.servers.length === 0) throw new Error("no coordinator URL given");
    this.servers = options.servers.map((server) => server.replace(/\/+$/, ""));
  }

  /** How long the coordinator has been unreachable (no answer from any URL), in ms; 0 if it answers. */
  outageMs(): number {
    return this.outage ? Date.now() - this.outage.since : 0;
  }

  /** The server requests go to now. */
  get server(): string {
    return this.servers[this.current] as string;
  }

  /** The Authorization header, for a request this client does not send (a streamed upload). */
  get authorization(): string {
    return `Bearer ${this.options.token}`;
  }

  /** Sends a JSON request and returns the parsed 2xx answer. */
  async call<T>(method: "GET" | "POST", path: string, body?: unknown, options: CallOptions = {}): Promise<T> {
    const { text } = await this.send(method, path, body, options, false);
    try {
      return JSON.parse(text) as T;
    } catch (error) {
      throw new Error(`${method} ${path}: the coordinator sent an answer that is not JSON`, { cause: error });
    }
  }

  /** Opens a long-lived GET (server-sent events): the 2xx response, its body still streaming. */
  async open(path: string, options: CallOptions = {}): Promise<Response> {
    return (await this.send("GET", path, undefined, options, true)).response as Response;
  }

  private async send(
    method: "GET" | "POST",
    path: string,
    body: unknown,
    options: CallOptions,
    streaming: boolean,
  ): Promise<Answer> {
    const retries = options.retries ?? Number.POSITIVE_INFINITY;
    for (let attempt = 0; ; attempt++) {
      const index = this.current;
      const server = this.servers[index] as string;
      let failure: string;
      try {
        const answer = streaming
          ? await this.fetchOnce(server, method, path, body, options, streaming)
          : await this.requestOnce(server, method, path, body, options);
        const status = answer.status;
        if (status < 500) this.reachable(server);
        if (status >= 200 && status < 300) return answer;
        const detail = errorDetail(answer.text);
        if (status === 401) throw new UnauthorizedError(server, detail);
        if (status < 500)
          throw new HttpError(status, server, `${method} ${path}`, detail, errorCode(answer.text));
        failure = `HTTP ${status}${detail ? `: ${detail}` : ""}`;
      } catch (error) {
        if (error instanceof UnauthorizedError || error instanceof HttpError) throw error;
        if (options.signal?.aborted) throw abortError(options.signal);
        failure = networkFailure(error, options.timeoutMs ?? this.options.timeoutMs ?? 15_000);
      }
      this.failed(index, failure);
      if (attempt >= retries) throw new Error(`${method} ${path}: cannot reach the coordinator (${failure})`);
      await this.pause(this.backoff(attempt), options.signal);
    }
  }

  /**
   * A retry's backoff, cut short when another request reaches the coordinator: after an outage
   * every request goes again at once. A lease left sleeping out its backoff could otherwise miss a
   * restarted coordinator's whole life — one that finished the sweep and exited while it slept.
   */
  private async pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
    const woken = new AbortController();
    const wake = (): void => woken.abort();
    this.retrying.add(wake);
    try {
      await sleep(ms, signal ? AbortSignal.any([signal, woken.signal]) : woken.signal);
    } catch (error) {
      if (signal?.aborted || !woken.signal.aborted) throw error;
    } finally {
      this.retrying.delete(wake);
    }
  }

  /**
   * One JSON request over node:http with keep-alive, the body read within the timeout. Not fetch:
   * an agent running short tasks sends a request or two per task, and fetch costs several
   * times the CPU of node:http for each.
   */
  private async requestOnce(
    server: string,
    method: string,
    path: string,
    body: unknown,
    options: CallOptions,
    firstTry = true,
  ): Promise<Answer> {
    try {
      return await this.requestOn(server, method, path, body, options);
    } catch (error) {
      // A kept-alive connection the coordinator closed as it was reused: not an outage, so
      // once more on a new connection.
      if (!(error instanceof StaleConnection) || !firstTry) throw error;
      return this.requestOnce(server, method, path, body, options, false);
    }
  }

  private requestOn(...[server, method, path, body, options]: RequestArgs): Promise<Answer> {
    const url = new URL(`${server}${API_PREFIX}${path}`);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const secure = url.protocol === "https:";
    const timeoutMs = options.timeoutMs ?? this.options.timeoutMs ?? 15_000;
    return new Promise<Answer>((resolve, reject) => {
      if (options.signal?.aborted) return reject(abortError(options.signal));
      const request = (secure ? https : http).request(url, {
        method,
        agent: secure ? httpsAgent : httpAgent,
        headers: {
          authorization: `Bearer ${this.options.token}`,
          ...(payload === undefined
            ? {}
            : { "content-type": "application/json", "content-length": Buffer.byteLength(payload) }),
        },
      });
      let settled = false;
      const fail = (error: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        options.signal?.removeEventListener("abort", onAbort);
        request.destroy();
        reject(error);
      };
      const onAbort = (): void => fail(abortError(options.signal as AbortSignal));
      const timer = setTimeout(() => fail(new TimeoutError()), timeoutMs);
      options.signal?.addEventListener("abort", onAbort, { once: true });
      request.once("error", (error: Error & { code?: string }) =>
        fail(
          request.reusedSocket && (error.code === "ECONNRESET" || error.code === "EPIPE")
            ? new StaleConnection(error.message)
            : error,
        ),
      );
      request.once("response", (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.once("error", fail);
        response.once("end", () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          options.signal?.removeEventListener("abort", onAbort);
          resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") });
        });
      });
      request.end(payload);
    });
  }

  /** One request through fetch: the event stream, whose 2xx body keeps streaming. */
  private async fetchOnce(
    server: string,
    method: string,
    path: string,
    body: unknown,
    options: CallOptions,
    streaming: boolean,
  ): Promise<Answer> {
    const controller = new AbortController();
    const outer = options.signal;
    const abort = (): void => controller.abort(outer?.reason);
    if (outer?.aborted) abort();
    outer?.addEventListener("abort", abort, { once: true });
    const timer = setTimeout(
      () => controller.abort(new TimeoutError()),
      options.timeoutMs ?? this.options.timeoutMs ?? 15_000,
    );
    let keepListening = false;
    try {
      const response = await fetch(`${server}${API_PREFIX}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.options.token}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
          ...(streaming ? { accept: "text/event-stream" } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller.signal,
      });
      // A stream stays open for the agent's lifetime: only the caller's signal ends it.
      if (streaming && response.ok) {
        keepListening = true;
        return { status: response.status, response, text: "" };
      }
      return { status: response.status, response, text: await response.text() };
    } finally {
      clearTimeout(timer);
      if (!keepListening) outer?.removeEventListener("abort", abort);
    }
  }

  private backoff(attempt: number): number {
    const min = this.options.minBackoffMs ?? 500;
    return Math.min(min * 2 ** Math.min(attempt, 30), this.options.maxBackoffMs ?? 10_000);
  }

  private failed(index: number, failure: string): void {
    const server = this.servers[index] as string;
    if (this.current === index) this.current = (index + 1) % this.servers.length;
    const now = Date.now();
    const { warn } = logger("agent", this.options.warn);
    const next = this.servers.length > 1 ? `; trying ${this.server} next` : "";
    if (!this.outage) {
      this.outage = { since: now, noticed: now };
      warn(
        `cannot reach the coordinator at ${server} (${failure}); retrying with backoff (0.5 s doubling to 10 s)${next}`,
      );
    } else if (now - this.outage.noticed >= (this.options.remindEveryMs ?? 30_000)) {
      this.outage.noticed = now;
      warn(
        `still cannot reach the coordinator after ${seconds(now - this.outage.since)} (${server}: ${failure}); retrying${next}`,
      );
    }
  }

  private reachable(server: string): void {
    if (!this.outage) return;
    const { warn } = logger("agent", this.options.warn);
    warn(`reached the coordinator at ${server} again after ${seconds(Date.now() - this.outage.since)}`);
    this.outage = null;
    for (const wake of [...this.retrying]) wake();
  }
}

class TimeoutError extends Error {
  override readonly name = "TimeoutError";
}

type RequestArgs = [server: string, method: string, path: string, body: unknown, options: CallOptions];

class StaleConnection extends Error {
  override readonly name = "StaleConnection";
}

/** Whether an error is the abort of a request or a wait by its caller's signal. */
export function isAbort(error: unknown): boolean {
  return error instanceof Error && error.name === "AbortError";
}

function abortError(signal: AbortSignal): Error {
  const reason = signal.reason;
  if (reason instanceof Error && reason.name === "AbortError") return reason;
  return new DOMException("the request was aborted", "AbortError");
}

/** Connections to the coordinator are kept open between requests. */
const httpAgent = new http.Agent({ keepAlive: true });
const httpsAgent = new https.Agent({ keepAlive: true });

interface Answer {
  status: number;
  /** fetch's response, for an event stream. */
  response?: Response;
  /** The body, read in full (empty for a 2xx stream). */
  text: string;
}

/** The `{ error }` sentence of an error answer, else the start of its text. */
function errorDetail(text: string): string {
  try {
    const body = JSON.parse(text) as { error?: unknown };
    if (typeof body?.error === "string") return body.error;
  } catch {
    // not the contract's { error } body: show the text
  }
  return text.trim().slice(0, 200);
}

function errorCode(text: string): ErrorCode | undefined {
  try {
    const body = JSON.parse(text) as ErrorBody;
    if (typeof body?.code === "string") return body.code;
  } catch {
    // not the contract's { error, code } body: nothing to branch on
  }
  return undefined;
}

function networkFailure(error: unknown, timeoutMs: number): string {
  if (error instanceof TimeoutError || (error instanceof Error && error.cause instanceof TimeoutError))
    return `no answer within ${seconds(timeoutMs)}`;
  if (!(error instanceof Error)) return String(error);
  // node:http's errors carry the code themselves; fetch's in their cause.
  const code = (error as Error & { code?: string }).code;
  if (code) return code;
  const cause = error.cause as (Error & { code?: string }) | undefined;
  if (cause?.code) return cause.code;
  return cause?.message ?? error.message;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
}

/** Waits `ms`; rejects with an AbortError when `signal` aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortError(signal as AbortSignal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
