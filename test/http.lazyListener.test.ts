/**
 * `run`'s dashboard listens at once and loads its app on the first request (listenLazily): over
 * real HTTP on 127.0.0.1, requests that come while it loads are all answered by it, a load that
 * fails answers 503 and is tried again by the next request, and close stops what was loaded.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { type LazyListener, listenLazily } from "../src/http/lazyListener.js";

const listeners: LazyListener[] = [];
afterEach(async () => {
  for (const listener of listeners.splice(0)) await listener.close();
});

type Handler = (request: IncomingMessage, response: ServerResponse) => void;

function answering(text: string): Handler {
  return (request, response) => response.end(`${text} ${request.url}`);
}

describe("listenLazily", () => {
  it("loads once, on the first request; requests that come while it loads wait for it", async () => {
    let loads = 0;
    let closed = 0;
    const listener = await listenLazily("127.0.0.1", 0, async (_server, route) => {
      loads++;
      route(answering("app"));
      await new Promise((resolve) => setTimeout(resolve, 300));
      return { close: async () => void closed++ };
    });
    listeners.push(listener);
    expect(listener.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(loads).toBe(0);
    expect(listener.loaded()).toBe(false);
    const texts = await Promise.all(
      ["/a", "/b", "/c"].map(async (path) => (await fetch(`${listener.url}${path}`)).text()),
    );
    expect(texts).toEqual(["app /a", "app /b", "app /c"]);
    expect(await (await fetch(`${listener.url}/d`)).text()).toBe("app /d");
    expect(loads).toBe(1);
    expect(listener.loaded()).toBe(true);
    await listener.close();
    expect(closed).toBe(1);
    await expect(fetch(`${listener.url}/e`)).rejects.toThrow();
  });

  it("answers 503 when the load fails, and the next request loads again", async () => {
    let loads = 0;
    const listener = await listenLazily("127.0.0.1", 0, async (_server, route) => {
      if (++loads === 1) throw new Error("cannot load");
      route(answering("second"));
      return { close: async () => undefined };
    });
    listeners.push(listener);
    const failed = await fetch(`${listener.url}/x`);
    expect(failed.status).toBe(503);
    expect(await failed.json()).toEqual({ error: expect.stringMatching(/could not be loaded/) });
    expect(await (await fetch(`${listener.url}/y`)).text()).toBe("second /y");
    expect(loads).toBe(2);
  });

  it("refuses a port that is taken, as listen does", async () => {
    const first = await listenLazily("127.0.0.1", 0, async () => ({ close: async () => undefined }));
    listeners.push(first);
    const port = Number(new URL(first.url).port);
    await expect(
      listenLazily("127.0.0.1", port, async () => ({ close: async () => undefined })),
    ).rejects.toThrow(/EADDRINUSE/);
  });
});
