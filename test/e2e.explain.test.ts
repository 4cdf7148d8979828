/**
 * `labsweep explain` against `labsweep serve` with a real `labsweep agent` whose fake GPU has
 * less free memory than a task needs: the coordinator names the need and the best offer and
 * where ("needs 24 GB free GPU memory; largest free now: 11.5 GB on …"), before any agent came
 * it says none is connected, the ledger alone judges by what the agent registered with,
 * GET /api/v1/tasks/:id/explain takes the viewer token, and the dashboard's task page shows the
 * same explanation. Real CLI (`npm run build` first), fake nvidia-smi on PATH, headless Chromium.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { laptopPage, launchBrowser, screenshot } from "./helpers/browser.js";
import { CLEAN_ENV, runCli, startCli, tempDir, watch, writeFile } from "./helpers/cli.js";
import { fakeGpuEnv } from "./helpers/fakeGpus.js";

const AGENT_TOKEN = "explain-test-agent-token-0123456789";
const VIEWER_TOKEN = "explain-test-viewer-token-0123456789";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface ExplanationJson {
  reasons: Array<{
    code: string;
    text: string;
    shortfall?: { resource: string; need: string; best: string };
  }>;
  offers: { source: string; agents: Array<{ name: string; host: string }> } | null;
}

describe("explain with a coordinator and its agents", () => {
  it("names the GPU memory a task needs and the most any connected agent has free", async () => {
    const dir = tempDir();
    writeFile(
      dir,
      "sweep.yaml",
      "command: echo {x}\nbig:\n  resources: {gpus: 1, gpu_memory_gb: 24}\n  combinations:\n    - x: [1]\n",
    );
    const env = { ...CLEAN_ENV };
    const served = watch(
      startCli(
        ["serve", "sweep.yaml", "--port", "0", "--agent-token", AGENT_TOKEN, "--viewer-token", VIEWER_TOKEN],
        { cwd: dir, env },
      ),
    );
    await served.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
    const url = (/^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(served.output()) as RegExpExecArray)[1] as string;
    const explain = (...args: string[]) => runCli(["explain", ...args], { cwd: dir, env });
    const asViewer = ["--server", url, "--token", VIEWER_TOKEN];
    const explainJson = async (...args: string[]): Promise<ExplanationJson> => {
      const result = await explain(...args, "--json");
      expect(result.code, result.stderr).toBe(0);
      return JSON.parse(result.stdout) as ExplanationJson;
    };

    // No agent yet.
    const alone = await explain("1", ...asViewer);
    expect(alone.stdout).toBe(
      "task 1 (phase big, pending): x=1\n  no agent is connected to the coordinator\n    → labsweep agent --server URL\n",
    );
    const refused = await explain("1", "--server", url);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/rejected the token/);

    // An agent whose only GPU has 11.5 GB free (24 GB in all: it stays, the task may fit later).
    const agent = watch(
      startCli(
        [
          "agent",
          "--server",
          url,
          "--token",
          AGENT_TOKEN,
          "--name",
          "b",
          "--slots",
          "1",
          "--state",
          join(dir, "agent"),
        ],
        {
          cwd: dir,
          env: {
            ...fakeGpuEnv([{ memoryTotalMiB: 24_576, memoryFreeMiB: 11_776 }], { ...process.env, ...env }),
            LABSWEEP_GPU_LOCK_DIR: tempDir(),
          },
        },
      ),
    );
    await agent.waitFor(/registered with/);
    let live = await explainJson("1", ...asViewer);
    for (let tries = 0; live.offers?.agents.length !== 1 && tries < 100; tries++) {
      await sleep(100);
      live = await explainJson("1", ...asViewer);
    }
    expect(live.offers).toMatchObject({ source: "live", agents: [{ name: "b" }] });
    expect(live.reasons).toHaveLength(1);
    expect(live.reasons[0]).toMatchObject({
      code: "resources",
      shortfall: { resource: "gpu_memory", need: "needs 24 GB free GPU memory" },
    });
    const text = (await explain("1", ...asViewer)).stdout;
    expect(text).toMatch(
      /^task 1 \(phase big, pending\): x=1\n {2}needs 24 GB free GPU memory; largest free now: 11\.5 GB on b \(host .+\)\n$/,
    );

    // The ledger alone (serve holds the state dir): the agent as it registered.
    const fromLedger = await explain("1", "sweep.yaml");
    expect(fromLedger.code, fromLedger.stderr).toBe(0);
    expect(fromLedger.stdout).toMatch(
      /\n {2}needs 24 GB free GPU memory; largest free at registration: 11\.5 GB on b \(host .+\)\n {2}\(agents as they registered; for what they offer now: labsweep explain 1 --server URL\)\n$/,
    );

    // The API route: the viewer token, 404 for no such task, 401 without a token.
    const viewer = { authorization: `Bearer ${VIEWER_TOKEN}` };
    const answer = await fetch(`${url}/api/v1/tasks/1/explain`, { headers: viewer });
    expect(answer.status).toBe(200);
    expect(((await answer.json()) as ExplanationJson).reasons[0]?.code).toBe("resources");
    expect((await fetch(`${url}/api/v1/tasks/99/explain`, { headers: viewer })).status).toBe(404);
    expect((await fetch(`${url}/api/v1/tasks/1/explain`)).status).toBe(401);
    const bad = await fetch(`${url}/api/v1/tasks/..%2f/explain`, { headers: viewer });
    expect(bad.status).toBe(400);

    // The dashboard's task page shows it.
    const browser = await launchBrowser();
    const { page, errors } = await laptopPage(browser);
    await page.goto(`${url}/?token=${VIEWER_TOKEN}`);
    await page.goto(`${url}/#/task/1`);
    const why = page.locator('#task-why li[data-code="resources"]');
    await why.waitFor({ timeout: 20_000 });
    expect(await page.locator("#why-heading").textContent()).toBe("Why not running");
    expect(await why.textContent()).toMatch(/^needs 24 GB free GPU memory; largest free now: 11\.5 GB on b/);
    await screenshot(page, "task-why-not-running");
    expect(errors).toEqual([]);
    await browser.close();

    agent.child.kill("SIGTERM");
    await agent.result;
    served.child.kill("SIGTERM");
    await served.result;
  }, 90_000);
});
