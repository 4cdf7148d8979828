import { createConnection, createServer, type Server, type Socket } from "node:net";

/**
 * A loopback TCP proxy for fault injection: listens on 127.0.0.1 (a free port) and forwards
 * every connection to `127.0.0.1:targetPort`.
 * - `pause()` is a silent partition: nothing is forwarded either way, new connections are
 *   accepted but held (not connected upstream), and a side that closes meanwhile is not told
 *   to the other side until `resume()`; no connection is closed by the proxy.
 * - `resume()` heals it: held data, connections and closes go through.
 * - `dropAll()` is a network blip: every open connection is destroyed on both sides; new
 *   connections still work.
 */
export interface TcpProxy {
  readonly port: number;
  readonly url: string;
  /** Connections accepted so far (to check that a client really went through the proxy). */
  readonly accepted: number;
  pause(): void;
  resume(): void;
  dropAll(): void;
  close(): Promise<void>;
}

interface Link {
  client: Socket;
  upstream: Socket | null;
}

export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const links = new Set<Link>();
  let paused = false;
  let accepted = 0;
  /** Work that a partition holds back: upstream connects and closes. */
  let held: Array<() => void> = [];

  const whenFlowing = (work: () => void): void => {
    if (paused) held.push(work);
    else work();
  };

  /** Forwards `from` → `to` by hand, so a partition can stop it with `from.pause()`. */
  const forward = (from: Socket, to: Socket): void => {
    from.on("data", (chunk: Buffer) => {
      if (!to.write(chunk)) {
        from.pause();
        to.once("drain", () => {
          if (!paused) from.resume();
        });
      }
    });
    from.on("end", () => whenFlowing(() => to.end()));
  };

  const connectUpstream = (link: Link): void => {
    if (link.client.destroyed) return;
    const upstream = createConnection({ host: "127.0.0.1", port: targetPort });
    link.upstream = upstream;
    forward(link.client, upstream);
    forward(upstream, link.client);
    upstream.on("error", () => undefined);
    upstream.on("close", () => {
      whenFlowing(() => {
        link.client.destroy();
        links.delete(link);
      });
    });
    if (!paused) link.client.resume();
  };

  const server: Server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    accepted++;
    const link: Link = { client, upstream: null };
    links.add(link);
    client.on("error", () => undefined);
    client.on("close", () => {
      whenFlowing(() => {
        link.upstream?.destroy();
        links.delete(link);
      });
    });
    whenFlowing(() => connectUpstream(link));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as { port: number };

  const dropAll = (): void => {
    for (const link of links) {
      link.client.destroy();
      link.upstream?.destroy();
    }
    links.clear();
  };

  return {
    port,
    url: `http://127.0.0.1:${port}`,
    get accepted() {
      return accepted;
    },
    pause() {
      paused = true;
      for (const link of links) {
        link.client.pause();
        link.upstream?.pause();
      }
    },
    resume() {
      if (!paused) return;
      paused = false;
      const work = held;
      held = [];
      for (const link of links) {
        link.client.resume();
        link.upstream?.resume();
      }
      for (const step of work) step();
    },
    dropAll() {
      held = [];
      dropAll();
    },
    async close() {
      paused = false;
      held = [];
      dropAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
