import { createServer } from "node:net";

/** How long a port handed out stays reserved against being handed out again. */
const RESERVED_MS = 60_000;
const handedOut = new Map<number, number>();

/**
 * A TCP port that is free on 127.0.0.1 right now, for a launcher's `auto` port. The port is
 * released before the launcher binds it, so another program could take it in between; the
 * kernel hands out ports spread over its ephemeral range, which makes that unlikely, and a port
 * this process handed out in the last minute is not handed out again (two tasks started
 * together must not share one).
 */
export async function freePort(): Promise<number> {
  const now = Date.now();
  for (const [port, at] of handedOut) if (now - at > RESERVED_MS) handedOut.delete(port);
  for (let attempt = 0; ; attempt++) {
    const port = await probe();
    if (!handedOut.has(port) || attempt >= 20) {
      handedOut.set(port, now);
      return port;
    }
  }
}

/** Binds port 0 on 127.0.0.1, reads the port the kernel chose, and closes it again. */
function probe(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ port: 0, host: "127.0.0.1", exclusive: true }, () => {
      const address = server.address();
      const port = address !== null && typeof address === "object" ? address.port : 0;
      server.close((error) => (error || port === 0 ? reject(error ?? new Error("no port")) : resolve(port)));
    });
  });
}
