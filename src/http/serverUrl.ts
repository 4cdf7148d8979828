import type { Server } from "node:http";

/** The URL a listening server is reached at, by the host it was asked to listen on. */
export function serverUrl(server: Server, host: string, https: boolean): string {
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  const shownHost = host.includes(":") ? `[${host}]` : host;
  return `${https ? "https" : "http"}://${shownHost}:${port}`;
}
