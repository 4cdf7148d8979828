import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { serverUrl } from "./serverUrl.js";

type Handler = (request: IncomingMessage, response: ServerResponse) => void;

/** What answers on a lazy listener once loaded: its handler comes through `route`. */
export interface Loaded {
  close(): Promise<void>;
}

export interface LazyListener {
  url: string;
  /** Whether the first request has loaded what answers. */
  loaded(): boolean;
  close(): Promise<void>;
}

/**
 * Binds host:port now and loads what answers there on the first request: `load` gets the
 * listening server and hands its request handler to `route`. For `run`'s dashboard, whose HTTP
 * app (fastify and the dashboard's routes) is more than a third of what a run loads: a run
 * nobody watches never pays for it, and loading it beside running tasks stalled their dispatch.
 * Requests that come while it loads wait for it; if it cannot load, they get 503 and the next
 * request tries again.
 */
export async function listenLazily(
  host: string,
  port: number,
  load: (server: Server, route: (handler: Handler) => void) => Promise<Loaded>,
): Promise<LazyListener> {
  let handler: Handler | null = null;
  let loading: Promise<Loaded> | null = null;
  let waiting: Array<[IncomingMessage, ServerResponse]> = [];
  const server = createServer((request, response) => {
    if (handler) return handler(request, response);
    waiting.push([request, response]);
    if (loading) return;
    let routed: Handler | null = null;
    loading = load(server, (given) => {
      routed = given;
    });
    loading.then(
      () => {
        handler = routed ?? unavailable;
        for (const [queued, reply] of waiting) handler(queued, reply);
        waiting = [];
      },
      () => {
        loading = null;
        for (const [, reply] of waiting) unavailable(undefined, reply);
        waiting = [];
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    url: serverUrl(server, host, false),
    loaded: () => handler !== null,
    async close() {
      const app = await loading?.catch(() => null);
      await app?.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

function unavailable(_request: IncomingMessage | undefined, response: ServerResponse): void {
  response.writeHead(503, { "content-type": "application/json" });
  response.end(JSON.stringify({ error: "the dashboard could not be loaded (see the run's output)" }));
}
