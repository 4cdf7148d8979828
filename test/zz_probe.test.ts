import { it } from "vitest";
import { startFixture, simpleSweep, agentAuth, agentInfo, capacityOf } from "./helpers/coordinatorFixture.js";

it("probe", async () => {
  const f = await startFixture(simpleSweep(2));
  const app = f.server.app;
  const show = async (label: string, opts: any) => {
    const r = await app.inject(opts);
    console.log(label, r.statusCode, r.body.slice(0, 300));
    return r;
  };
  await show("register-notoken", { method: "POST", url: "/api/v1/agents", payload: agentInfo("a1") });
  console.log(await f.db.all("SELECT * FROM agents"));
  await show("register", { method: "POST", url: "/api/v1/agents", payload: agentInfo("a1"), headers: agentAuth });
  const l = await show("lease", { method: "POST", url: "/api/v1/lease", payload: { agentId: "a1", capacity: capacityOf(), waitMs: 0 }, headers: agentAuth });
  const id = JSON.parse(l.body).lease.attemptId;
  await show("finish-nometrics", { method: "POST", url: `/api/v1/attempts/${id}/finish`, payload: { agentId: "a1", outcome: { kind: "succeeded" } }, headers: agentAuth });
  await show("started", { method: "POST", url: `/api/v1/attempts/${id}/started`, payload: { agentId: "a1", pid: 5 }, headers: agentAuth });
  await show("log", { method: "POST", url: `/api/v1/attempts/${id}/log`, payload: { agentId: "a1", offset: 0, text: "hello\n" }, headers: agentAuth });
  await show("getlog", { method: "GET", url: `/api/v1/tasks/1/log` });
  await show("configs", { method: "POST", url: `/api/v1/configs`, payload: { files: [{ path: "x.yaml", text: "a: b" }] }, headers: agentAuth });
  await show("badjson", { method: "POST", url: `/api/v1/lease`, payload: "{bad", headers: { ...agentAuth, "content-type": "application/json" } });
  await show("big", { method: "POST", url: `/api/v1/lease`, payload: JSON.stringify({ x: "a".repeat(2_000_000) }), headers: { ...agentAuth, "content-type": "application/json" } });
  await show("remote-read", { method: "GET", url: `/api/v1/status`, remoteAddress: "10.1.2.3" });
  console.log(f.warnings);
  await f.close();
});
