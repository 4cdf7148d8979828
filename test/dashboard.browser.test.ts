/**
 * The dashboard in a real headless Chromium against real sweeps: `labsweep serve` with a
 * `labsweep agent` running short python tasks (one of which fails), and `labsweep run` with fake
 * GPUs. The page must load, its numbers must move while tasks complete without a reload, a
 * failed task's log must open from the task table, and a plot with a ± std band must be drawn.
 * Screenshots go to test-artifacts/dashboard/. Run `npm run build` first (the CLI runs dist/).
 */
import { writeFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import { laptopPage, launchBrowser, screenshot } from "./helpers/browser.js";
import { runCli, startCli, tempDir, watch, writeFile } from "./helpers/cli.js";
import { fakeGpuEnv } from "./helpers/fakeGpus.js";

const TOKEN = "browser-test-agent-token-5d1e";
const CLEAN_ENV = {
  LABSWEEP_AGENT_TOKEN: "",
  LABSWEEP_VIEWER_TOKEN: "",
  LABSWEEP_TOKEN: "",
  LABSWEEP_SERVER: "",
};

// Each task sleeps a little, logs, and reports acc = width/10 + a per-seed offset (0, .02, .05);
// width 4 with seed 2 fails with a message on stderr.
const TRAIN = `import json, os, sys, time
p = json.loads(os.environ["LABSWEEP_PARAMS"])
print(f"training width={p['width']} seed={p['seed']}", flush=True)
time.sleep(0.5)
if p["width"] == 4 and p["seed"] == 2:
    print("boom: loss diverged at epoch 3", file=sys.stderr, flush=True)
    sys.exit(3)
acc = p["width"] / 10 + [0.0, 0.02, 0.05][p["seed"] - 1]
with open(os.environ["LABSWEEP_RESULT_FILE"], "w") as out:
    json.dump({"acc": acc, "loss": 1 / p["width"]}, out)
`;
const SWEEP = `command: python3 train.py
retries: 0
grid:
  output_dir: out
  combinations:
    - width: [1, 2, 4, 8]
    - poison: [0.0, 0.1]
    - seed: [1, 2, 3]
`;

// Curves: every task reports `loss` at steps 0..9 (seed 3 reaches step 10, alone) and a metric
// with a hostile 200-character name; the task lr=0.1 seed=1 holds after steps 4 and 9 until the
// test lets it go, so its page can be watched growing while it runs.
const HOSTILE = `<img src=x onerror="window.pwned=1">'"&`.padEnd(200, "x");
const CURVE = (dir: string) => `import json, os, time
p = json.loads(os.environ["LABSWEEP_PARAMS"])
events = open(os.environ["LABSWEEP_EVENTS_FILE"], "a")
hold = p["lr"] == 0.1 and p["seed"] == 1
def wait_for(name):
    while not os.path.exists(os.path.join(${JSON.stringify(dir)}, name)):
        time.sleep(0.05)
for step in range(11 if p["seed"] == 3 else 10):
    loss = p["lr"] * 10 / (step + 1) + p["seed"] * 0.01
    events.write(json.dumps({"type": "report", "step": step, "metrics": {"loss": loss, ${JSON.stringify(HOSTILE)}: step}}) + "\\n")
    events.flush()
    if hold and step == 4: wait_for("release-1")
    if hold and step == 9: wait_for("release-2")
with open(os.environ["LABSWEEP_RESULT_FILE"], "w") as out:
    json.dump({"loss": loss}, out)
`;

async function text(page: Page, selector: string): Promise<string> {
  return (await page.locator(selector).first().textContent())?.trim() ?? "";
}

describe("dashboard in a browser", () => {
  it("follows a served sweep live, opens a failed task's log, and draws mean ± std with a band", async () => {
    const dir = tempDir();
    writeFile(dir, "train.py", TRAIN);
    writeFile(dir, "sweep.yaml", SWEEP);
    const served = watch(
      startCli(["serve", join(dir, "sweep.yaml"), "--port", "0", "--agent-token", TOKEN], {
        cwd: dir,
        env: CLEAN_ENV,
      }),
      120_000,
    );
    await served.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
    const url = /^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(served.output())?.[1] as string;

    // As a browser on another machine would: `serve` does not trust loopback, so the page, its
    // API calls and the task log pane all go by the cookie the `?token=` link sets.
    const viewer = await runCli(["token", "--viewer", "--state", join(dir, ".labsweep")]);
    const browser = await launchBrowser();
    const { page, errors } = await laptopPage(browser);
    await page.goto(`${url}/?token=${encodeURIComponent(viewer.stdout.trim())}`);
    expect(page.url()).toBe(`${url}/`);
    await page.locator('[data-count="unique"]', { hasText: "24" }).waitFor({ timeout: 10_000 });
    expect(await text(page, '[data-count="succeeded"]')).toBe("0");
    // Landmarks, labels and the keyboard's first stops.
    expect(await page.locator("header").count()).toBe(1);
    expect(await page.locator("main").count()).toBe(1);
    expect(await page.getByRole("navigation", { name: "Dashboard sections" }).count()).toBe(1);
    const unlabelled = await page.evaluate(
      () =>
        [...document.querySelectorAll("input, select")].filter(
          (el) => (el as HTMLInputElement).labels?.length === 0,
        ).length,
    );
    expect(unlabelled).toBe(0);
    const stops: string[] = [];
    for (let i = 0; i < 4; i++) {
      await page.keyboard.press("Tab");
      stops.push(await page.evaluate(() => document.activeElement?.textContent?.trim() ?? ""));
    }
    expect(stops).toEqual(["Skip to content", "Overview", "Tasks", "Results"]);
    await page.evaluate(() => {
      (window as unknown as { sameDocument: boolean }).sameDocument = true;
    });
    // A keyboard user's focus survives the live updates.
    await page.focus('[data-phase="grid"] a');

    const agent = watch(
      startCli(
        ["agent", "--server", url, "--token", TOKEN, "--slots", "2", "--state", join(dir, "agent-state")],
        { cwd: dir, env: CLEAN_ENV },
      ),
      120_000,
    );
    // The counters move as tasks complete, pushed by the server: no reload.
    const seen = new Set<string>();
    let machineShot = false;
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const done = await text(page, '[data-count="succeeded"]');
      seen.add(done);
      if (!machineShot && Number(done) >= 4) {
        await page.locator("[data-machine] a", { hasText: "task" }).first().waitFor({ timeout: 5000 });
        await screenshot(page, "overview-running");
        machineShot = true;
      }
      if (done === "22") break;
      await page.waitForTimeout(100);
    }
    expect(
      [...seen].map(Number).sort((a, b) => a - b).length,
      `counter values seen: ${[...seen]}`,
    ).toBeGreaterThanOrEqual(4);
    expect(await text(page, '[data-count="succeeded"]')).toBe("22");
    await page.locator('[data-count="failed"]', { hasText: "2" }).waitFor({ timeout: 5000 });
    expect(await page.evaluate(() => (window as unknown as { sameDocument?: boolean }).sameDocument)).toBe(
      true,
    );
    expect(machineShot).toBe(true);
    expect(await page.evaluate(() => document.activeElement?.getAttribute("href"))).toBe(
      "#/tasks?phase=grid",
    );
    const agentExit = await agent.result;
    expect(agentExit.code, agent.output()).toBe(0);
    await screenshot(page, "overview-done");

    // The task table: filter to failed tasks, open one, read its error and log.
    await page.getByRole("link", { name: "Tasks" }).click();
    await page.getByLabel("State").selectOption("failed");
    await page.getByRole("button", { name: "Apply" }).click();
    // Exactly "of 2": the unfiltered table's "of 24" holds "of 2" too.
    await page.locator("#task-summary", { hasText: /^Tasks 1–2 of 2$/ }).waitFor({ timeout: 5000 });
    expect(await page.locator("#task-table tbody tr").count()).toBe(2);
    await screenshot(page, "tasks-failed");
    await page.locator("#task-table tbody tr a").first().click();
    await page.locator("#task-error", { hasText: "exit code 3" }).waitFor({ timeout: 5000 });
    await page
      .locator("#task-log", { hasText: "boom: loss diverged at epoch 3" })
      .waitFor({ timeout: 10_000 });
    expect(await text(page, "#task-log")).toContain("training width=4 seed=2");
    expect(await text(page, "#task-params")).toContain("width");
    await screenshot(page, "task-failed");

    // Results: acc against width, one line per poison ratio, mean ± std over seeds.
    await page.getByRole("link", { name: "Results" }).click();
    await page.getByLabel("x (parameter)").selectOption("width");
    await page.getByLabel("y (metric)").selectOption("acc");
    await page.getByLabel("One line per").selectOption("poison");
    await page.locator("#plots figure .uplot canvas").first().waitFor({ timeout: 10_000 });
    const figure = page.locator("#plots figure").first();
    expect(await figure.getAttribute("data-series")).toBe("2");
    expect(await figure.getAttribute("data-bands")).toBe("2");
    // Seeds add 0, .02, .05 (std .02517); width 4 lost seed 2: 0 and .05 give std .03536.
    expect(Number(await figure.getAttribute("data-max-std"))).toBeCloseTo(Math.sqrt(0.05 ** 2 / 2), 6);
    // The band is on the canvas: translucent fill, unlike the opaque lines.
    const bandPixels = await page.evaluate(() => {
      const canvas = document.querySelector("#plots figure canvas") as HTMLCanvasElement;
      const pixels = (canvas.getContext("2d") as CanvasRenderingContext2D).getImageData(
        0,
        0,
        canvas.width,
        canvas.height,
      ).data;
      let translucent = 0;
      for (let i = 3; i < pixels.length; i += 4)
        if ((pixels[i] as number) > 20 && (pixels[i] as number) < 120) translucent++;
      return translucent;
    });
    expect(bandPixels).toBeGreaterThan(500);
    const csv = await page.evaluate(async () => {
      const link = document.getElementById("plot-csv") as HTMLAnchorElement;
      return (await fetch(link.href)).text();
    });
    expect(csv.split("\n")[0]).toBe("poison,width,n,acc_mean,acc_std,acc_min,acc_max");
    expect(csv.trim().split("\n")).toHaveLength(9);
    await page.locator("#results-table tbody tr").first().waitFor();
    await screenshot(page, "results-plot");

    // Dark mode: the same page, dark.
    const dark = await laptopPage(browser, { colorScheme: "dark" });
    // A new browser context: it gets its own cookie from the link first.
    await dark.page.goto(`${url}/?token=${encodeURIComponent(viewer.stdout.trim())}`);
    await dark.page.goto(`${url}/#/results?x=width&y=acc&series=poison`);
    await dark.page.locator("#plots figure .uplot canvas").first().waitFor({ timeout: 10_000 });
    expect(await dark.page.evaluate(() => getComputedStyle(document.body).backgroundColor)).toBe(
      "rgb(13, 17, 23)",
    );
    await screenshot(dark.page, "results-dark");

    expect(errors).toEqual([]);
    expect(dark.errors).toEqual([]);
    await browser.close();
    served.child.kill("SIGINT");
    const exit = await served.result;
    expect(exit.code, served.output()).toBe(130);
  });

  it("is served by `labsweep run` too, with this machine's GPUs; --no-dashboard serves none; a taken port only warns", async () => {
    const dir = tempDir();
    writeFile(
      dir,
      "sweep.yaml",
      "command: sleep 1.2\nretries: 0\ngrid:\n  output_dir: out\n  combinations:\n    - x: [1, 2, 3, 4, 5, 6]\n",
    );
    const env = fakeGpuEnv(
      [
        { name: "Fake A100", memoryTotalMiB: 40_960, memoryFreeMiB: 30_000, utilization: 37 },
        { name: "Fake A100", memoryTotalMiB: 40_960, memoryFreeMiB: 10_000, utilization: 81 },
      ],
      { ...process.env, ...CLEAN_ENV },
    );
    const run = watch(startCli(["run", join(dir, "sweep.yaml")], { cwd: dir, env }), 60_000);
    await run.waitFor(/labsweep: dashboard at http:\/\/127\.0\.0\.1:\d+\/\n/);
    const url = /labsweep: dashboard at (http:\/\/127\.0\.0\.1:\d+)\//.exec(run.output())?.[1] as string;
    // As a browser on another machine would: `serve` does not trust loopback, so the page, its
    // API calls and the task log pane all go by the cookie the `?token=` link sets.
    const viewer = await runCli(["token", "--viewer", "--state", join(dir, ".labsweep")]);
    const browser = await launchBrowser();
    const { page, errors } = await laptopPage(browser);
    await page.goto(`${url}/?token=${encodeURIComponent(viewer.stdout.trim())}`);
    expect(page.url()).toBe(`${url}/`);
    await page.locator('[data-count="unique"]', { hasText: "6" }).waitFor({ timeout: 10_000 });
    const machine = page.locator("[data-machine]").first();
    await machine.waitFor({ timeout: 5000 });
    expect(await machine.textContent()).toContain("(this run)");
    await machine.locator("text=/\\/ 2/").waitFor({ timeout: 5000 });
    expect(await machine.locator('[data-gpu="0"]').textContent()).toContain("37");
    expect(await machine.locator('[data-gpu="1"]').textContent()).toContain("81");
    await page.locator("[data-machine] a", { hasText: "task" }).first().waitFor({ timeout: 5000 });
    await screenshot(page, "run-machines");
    expect(errors).toEqual([]);
    await browser.close();
    const exit = await run.result;
    expect(exit.code, run.output()).toBe(0);

    const quiet = watch(
      startCli(["run", join(dir, "sweep.yaml"), "--no-dashboard", "--state", join(dir, "other-state")], {
        cwd: dir,
        env: { ...env, PATH: process.env.PATH },
      }),
      60_000,
    );
    const quietExit = await quiet.result;
    expect(quietExit.code, quiet.output()).toBe(0);
    expect(quiet.output()).not.toContain("dashboard");

    // A taken --port: the run goes on without its dashboard, and says so.
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const port = (taken.address() as AddressInfo).port;
    try {
      const busy = watch(
        startCli(
          ["run", join(dir, "sweep.yaml"), "--port", String(port), "--state", join(dir, "third-state")],
          { cwd: dir, env: { ...env, PATH: process.env.PATH } },
        ),
        60_000,
      );
      const busyExit = await busy.result;
      expect(busyExit.code, busy.output()).toBe(0);
      expect(busy.output()).toMatch(/labsweep: dashboard not started: .*EADDRINUSE/);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  it("draws a running task's curves live, and the Results view's curves: one line per value with a band; hostile names stay text", async () => {
    const dir = tempDir();
    writeFile(dir, "curve.py", CURVE(dir));
    writeFile(
      dir,
      "sweep.yaml",
      "command: python3 curve.py\nretries: 0\ngrid:\n  output_dir: out\n  combinations:\n    - lr: [0.1, 0.2]\n    - seed: [1, 2, 3]\n",
    );
    const run = watch(
      startCli(["run", join(dir, "sweep.yaml"), "--slots", "3"], { cwd: dir, env: CLEAN_ENV }),
      120_000,
    );
    await run.waitFor(/labsweep: dashboard at http:\/\/127\.0\.0\.1:\d+\/\n/);
    const url = /labsweep: dashboard at (http:\/\/127\.0\.0\.1:\d+)\//.exec(run.output())?.[1] as string;
    const browser = await launchBrowser();
    const { page, errors } = await laptopPage(browser);
    await page.goto(`${url}/`);
    const held = await page.evaluate(async () => {
      const answer = await fetch("api/v1/dashboard/tasks?p.lr=0.1&p.seed=1");
      return ((await answer.json()) as { rows: Array<{ id: number }> }).rows[0]?.id;
    });
    expect(held).toBeGreaterThan(0);
    await page.evaluate(() => {
      (window as unknown as { sameDocument: boolean }).sameDocument = true;
    });

    // The task page: a curve per metric, growing while the task runs (no reload).
    await page.goto(`${url}/#/task/${held}`);
    const loss = page.locator('#task-curves figure[data-metric="loss"]');
    await page
      .locator('#task-curves figure[data-metric="loss"][data-points="5"]')
      .waitFor({ timeout: 20_000 });
    await loss.locator(".uplot canvas").first().waitFor();
    expect(await loss.locator(".curve-note").textContent()).toContain("5 points, step 0 to 4");
    // The hostile name is a caption's text, never markup.
    expect(await page.locator("#task-curves figure").count()).toBe(2);
    expect(await page.locator("#task-curves figcaption").allTextContents()).toContain(HOSTILE);
    expect(await page.locator("main img").count()).toBe(0);
    await screenshot(page, "task-curves-running");
    writeFileSync(join(dir, "release-1"), "");
    await page
      .locator('#task-curves figure[data-metric="loss"][data-points="10"]')
      .waitFor({ timeout: 20_000 });
    // Still running (held at step 9): the curve grew live, on the same page.
    const state = await page.evaluate(
      async (id) => ((await (await fetch(`api/v1/dashboard/tasks/${id}`)).json()) as { state: string }).state,
      held,
    );
    expect(state).toBe("running");
    expect(await page.evaluate(() => (window as unknown as { sameDocument?: boolean }).sameDocument)).toBe(
      true,
    );

    // Results, curves mode (reached by keyboard): loss by step, one line per lr, mean ± std over seeds.
    await page.waitForFunction(
      async () =>
        ((await (await fetch("api/v1/dashboard/overview")).json()) as { totals: { succeeded: number } })
          .totals.succeeded === 5,
      null,
      { timeout: 30_000, polling: 200 },
    );
    await page.getByRole("link", { name: "Results" }).click();
    // A hidden radio cannot take focus: wait for the view the click opens.
    await page.locator("#view-results:not([hidden])").waitFor();
    await page.getByLabel("Final metrics by parameter").focus();
    await page.keyboard.press("ArrowRight");
    await page.locator("#curves-view:not([hidden])").waitFor({ timeout: 5000 });
    expect(await page.locator("#plot-form").isHidden()).toBe(true);
    const metrics = page.getByLabel("Metric (reported by step)");
    // The view shows before its metric list arrives (GET /metrics): polled.
    await expect.poll(() => metrics.locator("option").allTextContents()).toEqual([HOSTILE, "loss"].sort());
    await metrics.selectOption("loss");
    await page.getByLabel("Group by (a line per value)").selectOption("lr");
    const figure = page.locator("#curves figure", {
      has: page.locator("figcaption", { hasText: /^loss by step, one line per lr$/ }),
    });
    await figure.locator(".uplot canvas").first().waitFor({ timeout: 10_000 });
    expect(await figure.getAttribute("data-lines")).toBe("2");
    expect(await figure.getAttribute("data-bands")).toBe("2");
    expect(await figure.getAttribute("data-tasks")).toBe("6");
    expect(await figure.getAttribute("data-truncated")).toBe("false");
    // Step 10 only seed 3 reached: averaged over that one task (n=1); the data table says so.
    const rows = await figure.locator("details tbody tr").allTextContents();
    expect(rows).toHaveLength(2);
    expect(await figure.locator("details tbody tr").first().locator("td").allTextContents()).toEqual([
      "0.1",
      "3",
      "11",
      "10",
      String(Number(((0.1 * 10) / 11 + 0.03).toPrecision(4))),
      "0",
      "1",
    ]);
    // The legend gives mean ± std (n) where the cursor is: at step 0, lr=0.2's seeds give 2.01, 2.02, 2.03.
    await expect
      .poll(
        async () => {
          const box = (await figure.locator(".uplot .u-over").boundingBox()) as { x: number; y: number };
          await page.mouse.move(box.x + 1 + Math.random(), box.y + 20);
          return figure.locator(".u-legend").textContent();
        },
        { timeout: 10_000 },
      )
      .toContain("2.02 ± 0.01 (n=3)");
    const bandPixels = await page.evaluate(() => {
      const canvas = document.querySelector("#curves figure canvas") as HTMLCanvasElement;
      const pixels = (canvas.getContext("2d") as CanvasRenderingContext2D).getImageData(
        0,
        0,
        canvas.width,
        canvas.height,
      ).data;
      let translucent = 0;
      for (let i = 3; i < pixels.length; i += 4)
        if ((pixels[i] as number) > 20 && (pixels[i] as number) < 120) translucent++;
      return translucent;
    });
    expect(bandPixels).toBeGreaterThan(500);
    await screenshot(page, "results-curves");

    // The hostile metric: drawn, its name shown as text, never as markup.
    await metrics.selectOption(HOSTILE);
    await page.locator("#curves figure figcaption", { hasText: "onerror" }).waitFor({ timeout: 10_000 });
    expect(await page.locator("#curves figure figcaption").textContent()).toBe(
      `${HOSTILE} by step, one line per lr`,
    );
    expect(await page.locator("main img").count()).toBe(0);
    expect(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned)).toBeUndefined();

    // Results, then Curves at once, on a fresh page: the first visit's answer, held until after
    // the second visit, must not put the final-metrics plot back over the curves, nor move focus.
    const fresh = await laptopPage(browser);
    let release = () => {};
    const fieldsHeld = new Promise<void>((resolve) => {
      release = resolve;
    });
    // The task list asks for the fields too: count the Results view's requests only.
    let fieldRequests = -1;
    await fresh.page.route("**/api/v1/dashboard/fields*", async (route) => {
      if (fieldRequests >= 0 && fieldRequests++ === 0) await fieldsHeld;
      await route.continue();
    });
    await Promise.all([
      fresh.page.waitForResponse(/\/api\/v1\/dashboard\/fields/),
      fresh.page.goto(`${url}/#/tasks`),
    ]);
    fieldRequests = 0;
    // By keyboard, as the main test does: Results opens, and while its fields are still on their
    // way the user switches to Curves; the first visit ending must not take their focus away.
    await fresh.page.getByRole("link", { name: "Results" }).click();
    await expect.poll(() => fieldRequests).toBe(1);
    await fresh.page.getByLabel("Final metrics by parameter").focus();
    await fresh.page.keyboard.press("ArrowRight");
    await fresh.page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 300)));
    release();
    await fresh.page.locator("#curves figure .uplot canvas").first().waitFor({ timeout: 10_000 });
    await fresh.page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 300)));
    expect(await fresh.page.locator("#curves-view").isVisible()).toBe(true);
    expect(await fresh.page.locator("#plot-form").isHidden()).toBe(true);
    expect(await fresh.page.getByLabel("Curves: a metric by step").isChecked()).toBe(true);
    expect(await fresh.page.evaluate(() => document.activeElement?.getAttribute("value"))).toBe("curves");
    expect(fresh.errors).toEqual([]);

    writeFileSync(join(dir, "release-2"), "");
    const exit = await run.result;
    expect(exit.code, run.output()).toBe(0);
    expect(errors).toEqual([]);
    await browser.close();
  });
});
