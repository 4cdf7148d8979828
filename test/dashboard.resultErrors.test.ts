/**
 * The dashboard says, first on its overview, which output dir's results cannot be written and
 * why, while `labsweep run` goes on: real headless Chromium against the built CLI (run `npm run
 * build` first). The Debian `chromium` package is required (see test/helpers/browser.ts).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { laptopPage, launchBrowser, screenshot } from "./helpers/browser.js";
import { startCli, tempDir, watch, writeFile } from "./helpers/cli.js";

// x = 1, 2 (out/a) end at once; x = 3 (out/b) runs until the run is stopped.
const TASK_PY = `import json, os, sys, time
x = int(sys.argv[1])
if x == 3:
    time.sleep(120)
json.dump({"loss": x / 10}, open(os.environ["LABSWEEP_RESULT_FILE"], "w"))
`;
const SWEEP = `command: python3 task.py {x}
retries: 0
a:
  output_dir: out/a
  combinations:
    - x: [1, 2]
b:
  output_dir: out/b
  combinations:
    - x: [3]
`;
const CLEAN_ENV = {
  LABSWEEP_AGENT_TOKEN: "",
  LABSWEEP_VIEWER_TOKEN: "",
  LABSWEEP_TOKEN: "",
  LABSWEEP_STORE: "",
};

describe("dashboard: result dirs that cannot be written", () => {
  it("shows the dir, the error and the rows waiting while the run goes on", async () => {
    const dir = tempDir();
    writeFile(dir, "task.py", TASK_PY);
    writeFile(dir, "sweep.yaml", SWEEP);
    mkdirSync(join(dir, "out", "a"), { recursive: true });
    writeFileSync(join(dir, "out", "a", "final_results.csv"), 'phase,x,loss\na,"1"x,2\n');
    const run = watch(
      startCli(["run", join(dir, "sweep.yaml"), "--slots", "3"], { cwd: dir, env: CLEAN_ENV }),
      60_000,
    );
    await run.waitFor(/labsweep: dashboard at http:\/\/127\.0\.0\.1:\d+\/\n/);
    const url = /labsweep: dashboard at (http:\/\/127\.0\.0\.1:\d+)\//.exec(run.output())?.[1] as string;
    const browser = await launchBrowser();
    const { page, errors } = await laptopPage(browser);
    await page.goto(`${url}/`);
    // Shown from the start (the resume scan met the file), then with the rows of x = 1, 2.
    const line = page.locator(`#result-errors [data-output-dir="${join(dir, "out", "a")}"]`);
    await line.filter({ hasText: "2 rows waiting" }).waitFor({ timeout: 20_000 });
    const text = (await line.textContent()) ?? "";
    expect(text).toContain(join(dir, "out", "a"));
    expect(text).toContain(`malformed CSV file ${join(dir, "out", "a", "final_results.csv")}`);
    expect(await page.locator("#result-errors").getAttribute("role")).toBe("alert");
    await screenshot(page, "result-errors");
    expect(errors).toEqual([]);
    await browser.close();
    // Terminates the running task (two SIGINTs sent at once would arrive as one).
    run.child.kill("SIGTERM");
    const exit = await run.result;
    expect(exit.code, run.output()).toBe(130);
  });
});
