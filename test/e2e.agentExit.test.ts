/**
 * An agent that finished and exited cleanly is `exited`, not "lost … its tasks were requeued",
 * and `labsweep agents` names it by its --name. Real `serve` and `agent` over loopback HTTP.
 * Run `npm run build` first.
 */
import { hostname } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runCli, startCli, tempDir, watch, writeFile } from "./helpers/cli.js";

describe("an agent's clean exit", () => {
  it("shows as exited under its --name, not as lost, after the disconnect grace", async () => {
    const dir = tempDir();
    const config = writeFile(dir, "sweep.yaml", "command: 'true'\np:\n  combinations:\n    - x: [1, 2]\n");
    const served = watch(startCli(["serve", config, "--port", "0"], { cwd: dir }));
    try {
      await served.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
      const url = (/^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(served.output()) as RegExpExecArray)[1] as string;
      const token = (await runCli(["token", "--state", join(dir, ".labsweep")])).stdout.trim();
      const agent = await runCli(
        [
          "agent",
          "--server",
          url,
          `--token=${token}`,
          "--state",
          join(dir, "agent"),
          "--name",
          "trainer-a",
          "--slots",
          "1",
        ],
        { cwd: dir },
      );
      expect(agent.code, agent.stderr).toBe(0);
      // Past the 2 s grace after which a closed channel would have made it lost.
      await new Promise((resolve) => setTimeout(resolve, 3000));
      const listed = await runCli(["agents", "--server", url, `--token=${token}`]);
      expect(listed.code, listed.stderr).toBe(0);
      expect(listed.stdout).toMatch(new RegExp(`^trainer-a on ${hostname()}: exited, 0 running`, "m"));
      expect(listed.stdout).not.toMatch(/lost|requeued/);
      const json = await runCli(["agents", "--server", url, `--token=${token}`, "--json"]);
      expect(JSON.parse(json.stdout).agents).toMatchObject([{ name: "trainer-a", state: "exited" }]);
    } finally {
      served.child.kill("SIGTERM");
      await served.result;
    }
  });
});
