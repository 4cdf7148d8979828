/**
 * `GET /api/v1/status` (what `labsweep status --server` prints) and the dashboard's overview name
 * the output dirs whose results cannot be written, and why. In process, over Fastify's inject.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type Fixture, startFixture, VIEWER_TOKEN } from "./helpers/coordinatorFixture.js";

let fixture: Fixture | null = null;
let outside: string | null = null;
afterEach(async () => {
  await fixture?.close();
  fixture = null;
  if (outside) rmSync(outside, { recursive: true, force: true });
  outside = null;
});

describe("result dirs that cannot be written, over the API", () => {
  it("are in /status and in the dashboard's overview, with the error and the rows owed", async () => {
    outside = mkdtempSync(join(tmpdir(), "labsweep-out-"));
    const out = join(outside, "out");
    mkdirSync(out);
    writeFileSync(join(out, "final_results.csv"), 'x,loss\n"1"x,2\n');
    fixture = await startFixture(
      `command: echo {x}\nmain:\n  output_dir: ${JSON.stringify(out)}\n  combinations:\n    - x: [1, 2]\n`,
    );
    const headers = { authorization: `Bearer ${VIEWER_TOKEN}` };
    const status = await fixture.server.app.inject({ method: "GET", url: "/api/v1/status", headers });
    expect(status.statusCode, status.body).toBe(200);
    const expected = [
      expect.objectContaining({
        outputDir: out,
        owedRows: 0,
        error: expect.stringContaining(`malformed CSV file ${join(out, "final_results.csv")}`),
      }),
    ];
    expect(status.json().resultErrors).toEqual(expected);
    const overview = await fixture.server.app.inject({
      method: "GET",
      url: "/api/v1/dashboard/overview",
      headers,
    });
    expect(overview.statusCode, overview.body).toBe(200);
    expect(overview.json().resultErrors).toEqual(expected);
  });
});
