import type { ServerResponse } from "node:http";
import type { FastifyReply } from "fastify";

/**
 * Takes a reply over from Fastify and opens it as a server-sent event stream (the agents'
 * channel, the dashboard's live updates); the caller writes events and ends it.
 */
export function openEventStream(reply: FastifyReply): ServerResponse {
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, {
    "content-type": "text/event-stream",
    "cache-control": "no-store",
    connection: "keep-alive",
    // A reverse proxy (nginx) must pass events on as they come, not buffer them.
    "x-accel-buffering": "no",
  });
  return raw;
}
