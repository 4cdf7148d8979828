/**
 * A server compiles its routes' JSON schemas without checking them against the meta-schema (it
 * cost a quarter of `run`'s start-up); the test fixture checks them. So every route schema is
 * checked here, on the full app (agents' and admin's routes, artifacts, points, dashboard), and
 * the switch is shown to be what catches a malformed one (Ajv still checks each keyword's type
 * without it; a bound below zero is one only the meta-schema catches).
 */
import { afterEach, describe, expect, it } from "vitest";
import { buildApp } from "../src/coordinator/http/app.js";
import { GpuTelemetry } from "../src/telemetry/gpuTelemetry.js";
import {
  ADMIN_TOKEN,
  AGENT_TOKEN,
  type Fixture,
  simpleSweep,
  startFixture,
  VIEWER_TOKEN,
} from "./helpers/coordinatorFixture.js";

let fixture: Fixture | undefined;
afterEach(async () => {
  await fixture?.close();
  fixture = undefined;
});

describe("route schemas", () => {
  it("every route's schema is valid JSON schema (the fixture checks them as they compile)", async () => {
    fixture = await startFixture(simpleSweep(2));
    expect(fixture.server.app.printRoutes().length).toBeGreaterThan(0);
    // Compiled and checked when the server started: a request through a schema'd route works.
    const bad = await fixture.server.app.inject({ method: "POST", url: "/api/v1/lease", payload: "[]" });
    expect([400, 401]).toContain(bad.statusCode);
  });

  it("a malformed schema fails start-up with the check, and passes unnoticed without it", async () => {
    fixture = await startFixture(simpleSweep(1));
    const { coordinator } = fixture.server;
    const ready = async (checkSchemas: boolean) => {
      const app = buildApp({
        coordinator,
        tokens: { agent: AGENT_TOKEN, viewer: VIEWER_TOKEN, admin: ADMIN_TOKEN },
        stateDir: fixture?.stateDir as string,
        telemetry: new GpuTelemetry(),
        agentApi: false,
        dashboard: false,
        checkSchemas,
      });
      app.get(
        "/malformed",
        { schema: { querystring: { type: "object", properties: { x: { maxLength: -1 } } } } },
        async () => ({}),
      );
      try {
        await app.ready();
        return "ready";
      } catch (error) {
        return String(error);
      } finally {
        await app.close();
      }
    };
    expect(await ready(true)).toMatch(/schema|type/i);
    expect(await ready(false)).toBe("ready");
  });
});
