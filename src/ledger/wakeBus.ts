import type pg from "pg";
import { pgDriver } from "./postgresDb.js";

/**
 * Tells the other coordinators on one ledger that work may be claimable, so an agent's lease
 * held open at one replica is answered the moment a task finishes, is added or is requeued at
 * another — not when its wait runs out. One coordinator alone needs none (`noWakeBus`).
 */
export interface WakeBus {
  /** Tells the other coordinators (coalesced: many calls close together send one message). */
  publish(): void;
  /** `listener` runs when another coordinator published. */
  subscribe(listener: () => void): void;
  close(): Promise<void>;
}

export const noWakeBus: WakeBus = {
  publish() {},
  subscribe() {},
  async close() {},
};

const CHANNEL = "labsweep_work";
/** Publishes within this long of each other become one NOTIFY. */
const COALESCE_MS = 5;
const RECONNECT_MS = 1000;

/**
 * The bus over PostgreSQL LISTEN/NOTIFY, on one connection of its own. Each message carries
 * its sender's id, so a coordinator is not woken by its own publishes. A dropped connection is
 * reopened; wake-ups missed meanwhile cost only latency, as leases also re-check when their wait
 * ends.
 */
export function postgresWakeBus(url: string, warn: (message: string) => void = () => undefined): WakeBus {
  const self = `${process.pid}-${Math.random().toString(36).slice(2)}`;
  const listeners: Array<() => void> = [];
  const link = listeningConnection(
    url,
    self,
    () => {
      for (const listener of listeners) listener();
    },
    warn,
  );
  const notices = coalesced(async () => {
    const target = await link.client();
    await target?.query("SELECT pg_notify($1, $2)", [CHANNEL, self]).catch(() => undefined);
  });
  return {
    publish: notices.publish,
    subscribe(listener) {
      listeners.push(listener);
    },
    async close() {
      notices.stop();
      await link.close();
    },
  };
}

/**
 * The LISTEN connection: opened at once, reopened after a drop or a failed start, and the one
 * NOTIFYs are sent on. `notice` runs for every message but this coordinator's own.
 */
function listeningConnection(
  url: string,
  self: string,
  notice: () => void,
  warn: (message: string) => void,
): { client(): Promise<pg.Client | null>; close(): Promise<void> } {
  let client: pg.Client | null = null;
  let connecting: Promise<pg.Client | null> | null = null;
  let closed = false;
  let retry: NodeJS.Timeout | null = null;
  const connect = (): Promise<pg.Client | null> => {
    connecting ??= (async () => {
      const next = new (pgDriver().Client)({ connectionString: url });
      next.on("notification", (message) => {
        if (message.payload !== self) notice();
      });
      next.on("error", () => {
        // The connection is gone: forget it; the next publish or the retry timer reopens it.
        if (client === next) client = null;
        next.end().catch(() => undefined);
        scheduleReconnect();
      });
      try {
        await next.connect();
        await next.query(`LISTEN ${CHANNEL}`);
        if (closed) {
          await next.end();
          return null;
        }
        client = next;
        return next;
      } catch (error) {
        warn(`labsweep: cannot listen for other coordinators' work notices: ${(error as Error).message}`);
        await next.end().catch(() => undefined);
        scheduleReconnect();
        return null;
      } finally {
        connecting = null;
      }
    })();
    return connecting;
  };
  const scheduleReconnect = (): void => {
    if (closed || retry) return;
    retry = setTimeout(() => {
      retry = null;
      if (!client) void connect();
    }, RECONNECT_MS);
    retry.unref();
  };
  void connect();
  return {
    client: async () => client ?? (await connect()),
    async close() {
      closed = true;
      if (retry) clearTimeout(retry);
      await connecting;
      await client?.end().catch(() => undefined);
      client = null;
    },
  };
}

/** Publishes within COALESCE_MS of each other become one `send`, and one runs at a time. */
function coalesced(send: () => Promise<void>): { publish(): void; stop(): void } {
  let stopped = false;
  let pending: NodeJS.Timeout | null = null;
  let sending = false;
  let again = false;
  const publish = (): void => {
    if (stopped || pending) return;
    // One NOTIFY at a time: publishes while one is on its way send one more after it, rather
    // than queue a query per publish on the connection (pg warns of that, and under load it
    // was a NOTIFY per few completions).
    if (sending) {
      again = true;
      return;
    }
    pending = setTimeout(() => {
      pending = null;
      sending = true;
      void (async () => {
        try {
          await send();
        } finally {
          sending = false;
          if (again) {
            again = false;
            publish();
          }
        }
      })();
    }, COALESCE_MS);
  };
  return {
    publish,
    stop() {
      stopped = true;
      if (pending) clearTimeout(pending);
    },
  };
}
