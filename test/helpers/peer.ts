/**
 * A minimal real HTTP server on 127.0.0.1 standing in for the coordinator at the process
 * boundary: each test answers just the requests it is about (retries, failover, 401…). Every
 * server is closed after the test.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach } from "vitest";

export interface PeerRequest {
  method: string;
  /** Path and query, e.g. /api/v1/lease */
  url: string;
  authorization: string | undefined;
  body: unknown;
  at: number;
}

export type PeerHandler = (
  request: PeerRequest,
  response: ServerResponse,
  raw: IncomingMessage,
) => void | Promise<void>;

export interface Peer {
  url: string;
  port: number;
  requests: PeerRequest[];
  close(): Promise<void>;
}

const open = new Set<Server>();

/** Starts a peer on 127.0.0.1 (`port` 0: any free port). */
export async function startPeer(handler: PeerHandler, port = 0): Promise<Peer> {
  const requests: PeerRequest[] = [];
  const server = createServer((raw, response) => {
    // Decoded whole at the end: a chunk may end inside a multi-byte character.
    const chunks: Buffer[] = [];
    raw.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
    });
    raw.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      const request: PeerRequest = {
        method: raw.method ?? "",
        url: raw.url ?? "",
        authorization: raw.headers.authorization,
        body: text ? JSON.parse(text) : undefined,
        at: Date.now(),
      };
      requests.push(request);
      void Promise.resolve(handler(request, response, raw)).catch((error: Error) => {
        response.statusCode = 500;
        response.end(JSON.stringify({ error: error.message }));
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", resolve);
  });
  open.add(server);
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${actual}`,
    port: actual,
    requests,
    close: () => closeServer(server),
  };
}

/** A URL nothing listens on (a server bound, then closed). */
export async function deadUrl(): Promise<{ url: string; port: number }> {
  const peer = await startPeer(() => undefined);
  await peer.close();
  return { url: peer.url, port: peer.port };
}

export function json(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { "content-type": "application/json" });
  response.end(JSON.stringify(body));
}

async function closeServer(server: Server): Promise<void> {
  if (!open.delete(server)) return;
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

afterEach(async () => {
  await Promise.all([...open].map(closeServer));
});
