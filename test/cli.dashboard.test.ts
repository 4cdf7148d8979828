/**
 * `labsweep dashboard`: a finished sweep's dashboard served read-only over real HTTP on
 * 127.0.0.1 — its reads answer (the summary the same as `labsweep results`), nothing that
 * changes the sweep exists, a foreign Host header is refused, it holds no lock (`run` starts
 * beside it), and it stops on SIGTERM sent to its pid. In a real Chromium: the summary table
 * sorts by a header (keyboard included), marks each metric's best mean, and exports in the
 * order shown.
 */
import { rmSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { laptopPage, launchBrowser, screenshot } from "./helpers/browser.js";
import { runCli, startCli, watch } from "./helpers/cli.js";
import { HOSTILE } from "./helpers/summaryFixture.js";
import { runSummarySweep } from "./helpers/summaryRun.js";

let dir: string;
let config: string;

beforeAll(async () => {
  ({ dir, config } = await runSummarySweep("labsweep-dashboard-cli-"));
}, 150_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Starts `labsweep dashboard` on a free port; returns the child and the URL it printed. */
async function startDashboard(): Promise<{ url: string; served: ReturnType<typeof watch> }> {
  const served = watch(startCli(["dashboard", config, "--port", "0"], { cwd: dir }));
  await served.waitFor(/^http:\/\/127\.0\.0\.1:\d+\/$/m);
  const url = (/^(http:\/\/127\.0\.0\.1:\d+\/)$/m.exec(served.output()) as RegExpExecArray)[1] as string;
  return { url, served };
}

/** One HTTP request with the headers given (fetch would not let a test set Host). */
function call(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; body: string; type: string }> {
  return new Promise((resolve, reject) => {
    const sent = request(url, { method: options.method ?? "GET", headers: options.headers }, (response) => {
      let body = "";
      response.on("data", (chunk: Buffer) => {
        body += chunk.toString();
      });
      response.on("end", () =>
        resolve({ status: response.statusCode ?? 0, body, type: String(response.headers["content-type"]) }),
      );
    });
    sent.on("error", reject);
    sent.end(options.body);
  });
}

describe("labsweep dashboard", () => {
  it("serves the reads on 127.0.0.1, no route that changes anything, no lock; stops on SIGTERM", async () => {
    const { url, served } = await startDashboard();
    expect(served.output()).toMatch(
      /dashboard \(read-only\) at http:\/\/127\.0\.0\.1:\d+\/ — Ctrl-C to stop/,
    );
    // No token in what it printed: loopback needs none, and other machines fetch it with `labsweep token`.
    expect(served.output()).not.toMatch(/token=/);

    const page = await call(url);
    expect([page.status, page.type]).toEqual([200, "text/html; charset=utf-8"]);
    const status = JSON.parse((await call(`${url}api/v1/status`)).body) as {
      succeeded: number;
      failed: number;
    };
    expect([status.succeeded, status.failed]).toEqual([9, 3]);
    const overview = await call(`${url}api/v1/dashboard/overview`);
    expect(overview.status).toBe(200);

    // The summary is labsweep results' own, to the byte.
    const summary = await call(`${url}api/v1/dashboard/summary?format=md&phase=main`);
    const cli = await runCli(["results", config, "--format", "md", "--phase", "main"], { cwd: dir });
    expect(summary.body).toBe(cli.stdout);
    const json = JSON.parse((await call(`${url}api/v1/dashboard/summary?phase=main`)).body) as {
      rows: Array<{ params: { tag: string } }>;
      texts: Array<Record<string, { value: string; ci: string }>>;
    };
    expect(json.rows[0]?.params.tag).toBe(HOSTILE);
    expect(json.texts[3]?.acc).toEqual({ value: "0.820 ± 0.020", ci: "[0.770, 0.870]" });
    const badBy = await call(`${url}api/v1/dashboard/summary?by=sede`);
    expect(badBy.status).toBe(400);
    expect(JSON.parse(badBy.body).error).toMatch(/unknown parameter "sede" in --by .*did you mean "seed"/);

    // Nothing that changes the sweep: the agents' and the admin's routes are not there.
    const json200 = { "content-type": "application/json" };
    for (const [method, path] of [
      ["POST", "api/v1/agents"],
      ["POST", "api/v1/lease"],
      ["POST", "api/v1/cancel"],
      ["POST", "api/v1/retry"],
      ["POST", "api/v1/add"],
      ["POST", "api/v1/attempts/1/finish"],
      ["POST", "api/v1/agents/a/points"],
      ["PUT", `api/v1/agents/a/attempts/1/artifacts/x?offset=0&size=1&sha256=${"0".repeat(64)}`],
    ] as const) {
      const answer = await call(`${url}${path}`, { method, headers: json200, body: "{}" });
      expect([answer.status, JSON.parse(answer.body).error], `${method} ${path}`).toEqual([
        404,
        `no such endpoint: ${method} /${path}`,
      ]);
    }
    // Loopback trust needs the Host header to name this machine (DNS rebinding).
    const rebound = await call(`${url}api/v1/status`, { headers: { host: "evil.example:80" } });
    expect(rebound.status).toBe(401);

    // It holds no lock: a run of the same sweep starts (and, all done, ends) beside it.
    const again = await runCli(["run", config, "--no-dashboard"], { cwd: dir });
    expect(again.stderr).toMatch(/9 succeeded, 3 failed/);
    expect(again.stderr).not.toMatch(/another labsweep run holds/);

    served.child.kill("SIGTERM");
    const ended = await served.result;
    expect(ended.code).toBe(0);
    await expect(call(url)).rejects.toThrow(/ECONNREFUSED/);
  });

  it("--open without a display says so and serves anyway; no ledger is one clear line", async () => {
    const served = watch(
      startCli(["dashboard", config, "--port", "0", "--open"], {
        cwd: dir,
        env: { DISPLAY: "", WAYLAND_DISPLAY: "" },
      }),
    );
    await served.waitFor(/no display to open a browser on: open http:\/\/127\.0\.0\.1:\d+\/ yourself/);
    served.child.kill("SIGTERM");
    expect((await served.result).code).toBe(0);
    const none = await runCli(["dashboard", "--state", join(dir, "nothing-here")], { cwd: dir });
    expect([none.code, none.stdout]).toEqual([2, ""]);
    expect(none.stderr).toMatch(/^labsweep: no ledger in .*nothing-here/);
  });

  it("in a browser: the summary sorts by a header, marks the best, exports in the order shown", async () => {
    const { url, served } = await startDashboard();
    const browser = await launchBrowser();
    const { page, errors } = await laptopPage(browser);
    await page.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: url });
    await page.goto(`${url}#/results`);
    const rows = page.locator("#summary-table tbody tr");
    await expect.poll(() => rows.count()).toBe(5);
    // Several phases: a phase column first; the hostile tag shown as text, never as markup.
    const headers = await page.locator("#summary-table thead th").allTextContents();
    expect(headers).toEqual(["phase", "lr", "tag", "n", "acc", "acc 95% CI", "loss", "loss 95% CI"]);
    expect(await rows.nth(0).locator("td").nth(2).textContent()).toBe(HOSTILE);
    // The best mean of each metric column: bold, starred, said to screen readers.
    const best = page.locator("#summary-table td.best");
    expect(await best.allTextContents()).toEqual(["0.900 ± 0.000 ★ (best)", "0.20 ± 0.00 ★ (best)"]);
    expect(await best.first().evaluate((cell) => getComputedStyle(cell).fontWeight)).toBe("700");

    // Sort by acc with the keyboard: Enter on the header's button, then again for descending.
    const accHeader = page.locator('#summary-table button[data-sort="metric:acc"]');
    const accTh = page.locator('#summary-table th:has(button[data-sort="metric:acc"])');
    await accHeader.focus();
    await page.keyboard.press("Enter");
    const accs = () =>
      rows.evaluateAll((trs) => trs.map((tr) => tr.children[4]?.textContent?.split(" ±")[0]));
    expect(await accs()).toEqual(["0.500", "0.720", "0.820", "0.820", "0.900"]);
    expect(await accTh.getAttribute("aria-sort")).toBe("ascending");
    await page.keyboard.press("Enter");
    expect(await accs()).toEqual(["0.900", "0.820", "0.820", "0.720", "0.500"]);
    expect(await accTh.getAttribute("aria-sort")).toBe("descending");
    // A click sorts too: by lr, ascending.
    await page.locator('#summary-table button[data-sort="param:lr"]').click();
    expect(await rows.evaluateAll((trs) => trs.map((tr) => tr.children[1]?.textContent))).toEqual([
      "0.01",
      "0.01",
      "0.1",
      "0.1",
      "0.1",
    ]);
    await page.locator('#summary-table button[data-sort="metric:acc"]').click();
    await page.locator('#summary-table button[data-sort="metric:acc"]').click();

    // Exports follow the order shown: LaTeX copied, CSV downloaded.
    await page.locator("#summary-latex").click();
    await expect
      .poll(() => page.locator("#summary-copied").textContent())
      .toMatch(/Copied as LaTeX|selected/);
    const latex = await page.locator("#summary-export").inputValue();
    const body = latex
      .split("\n")
      .filter((line) => line.endsWith(" \\\\"))
      .slice(1);
    expect(body.map((line) => line.split(" & ")[4]?.split(" ")[0])).toEqual([
      "\\textbf{0.900",
      "0.820",
      "0.820",
      "0.720",
      "0.500",
    ]);
    expect(latex).toContain("50\\% \\_x\\_");
    const href = (await page.locator("#summary-csv").getAttribute("href")) as string;
    expect(href).toContain("sort=metric%3Aacc");
    const csv = await page.request.get(new URL(href, url).href);
    expect(csv.headers()["content-disposition"]).toBe('attachment; filename="summary.csv"');
    const csvRows = (await csv.text()).trim().split("\n");
    expect(csvRows[0]?.startsWith("phase,lr,tag,n,planned,incomplete,acc_n,acc_mean")).toBe(true);
    expect(csvRows[1]?.startsWith("main,0.01,plain,3,3,false,3,0.9")).toBe(true);
    await screenshot(page, "summary-table");
    expect(errors).toEqual([]);
    await browser.close();
    served.child.kill("SIGTERM");
    expect((await served.result).code).toBe(0);
  });
});
