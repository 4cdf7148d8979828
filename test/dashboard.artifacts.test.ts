/**
 * The task page lists a task's artifacts and downloads them, in a real headless Chromium against
 * `labsweep run`'s dashboard: the viewer cookie set by `?token=` carries the list and the
 * download. Run `npm run build` first (the CLI runs dist/).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { laptopPage, launchBrowser, screenshot } from "./helpers/browser.js";
import { runCli, startCli, tempDir, watch, writeFile } from "./helpers/cli.js";

// Task x=1 writes its artifacts and ends; x=2 keeps the run (and its dashboard) up meanwhile.
const TASK = `import sys, time, labsweep
x = int(sys.argv[1])
if x == 1:
    (labsweep.work_dir() / "plots").mkdir()
    (labsweep.work_dir() / "plots" / "loss curve.csv").write_text("step,loss\\n1,0.5\\n")
    (labsweep.work_dir() / "page.html").write_text("<script>document.title = 'ran'</script>")
else:
    time.sleep(8)
labsweep.result(x=x)
`;

describe("the task page's artifacts", () => {
  it("lists each file with its size and checksum, and its link downloads it", async () => {
    const dir = tempDir();
    writeFile(dir, "task.py", TASK);
    writeFile(
      dir,
      "sweep.yaml",
      'command: python3 task.py {x}\nretries: 0\nartifacts: ["plots/**", "*.html"]\ngrid:\n  output_dir: out\n  combinations:\n    - x: [1, 2]\n',
    );
    const env = { LABSWEEP_VIEWER_TOKEN: "", LABSWEEP_TOKEN: "" };
    const run = watch(startCli(["run", join(dir, "sweep.yaml"), "--slots", "2"], { cwd: dir, env }), 60_000);
    await run.waitFor(/labsweep: dashboard at http:\/\/127\.0\.0\.1:\d+\/\n/);
    const url = /labsweep: dashboard at (http:\/\/127\.0\.0\.1:\d+)\//.exec(run.output())?.[1] as string;
    const viewer = await runCli(["token", "--viewer", "--state", join(dir, ".labsweep")]);
    const browser = await launchBrowser();
    try {
      const { page, errors } = await laptopPage(browser);
      await page.goto(`${url}/?token=${encodeURIComponent(viewer.stdout.trim())}`);
      // Task 1's files are stored before its success is recorded: once it shows, they are there.
      await page.goto(`${url}/#/task/1`);
      await page
        .locator("#task-detail .badge", { hasText: "succeeded" })
        .first()
        .waitFor({ timeout: 20_000 });
      await page.reload();
      const links = page.locator("#task-artifacts a");
      await links.first().waitFor({ timeout: 10_000 });
      expect(await links.allTextContents()).toEqual(["page.html", "plots/loss curve.csv"]);
      const rows = await page.locator("#task-artifacts tbody tr").allTextContents();
      expect(rows[1]).toMatch(/plots\/loss curve\.csv\s*16 B/);
      await screenshot(page, "task-artifacts");
      const [download] = await Promise.all([page.waitForEvent("download"), links.nth(1).click()]);
      expect(download.suggestedFilename()).toBe("loss curve.csv");
      expect(readFileSync(await download.path(), "utf8")).toBe("step,loss\n1,0.5\n");
      // The task's HTML is a download, never a page of the dashboard's origin.
      const [page2] = await Promise.all([page.waitForEvent("download"), links.nth(0).click()]);
      expect(page2.suggestedFilename()).toBe("page.html");
      expect(await page.title()).not.toBe("ran");
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
    const exit = await run.result;
    expect(exit.code, run.output()).toBe(0);
  }, 60_000);
});
