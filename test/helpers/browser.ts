/**
 * Headless Chromium for the dashboard's browser tests, driven by playwright-core. The Debian
 * `chromium` package is required (CI installs it in .ci/run): without it the tests fail with a
 * message saying so — they are never skipped. Every browser a test launches is closed after it,
 * and a test that leaves one open fails.
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterEach } from "vitest";
import { REPO_ROOT } from "./cli.js";

export const CHROMIUM = process.env.LABSWEEP_CHROMIUM ?? "/usr/bin/chromium";
/** Screenshots land here (ignored by git; CI keeps them as artifacts). */
export const ARTIFACTS = join(REPO_ROOT, "test-artifacts", "dashboard");

const open = new Set<Browser>();

/** Launches headless Chromium; fails with the fix when it is not installed. */
export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM))
    throw new Error(
      `the dashboard's browser tests need Chromium at ${CHROMIUM}: install it (apt-get install chromium, as .ci/run does) or set LABSWEEP_CHROMIUM`,
    );
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  open.add(browser);
  browser.once("disconnected", () => open.delete(browser));
  return browser;
}

/** A page at a laptop's 1366×768, collecting console errors and uncaught exceptions. */
export async function laptopPage(
  browser: Browser,
  options: { colorScheme?: "light" | "dark" } = {},
): Promise<{ page: Page; errors: string[] }> {
  const context = await browser.newContext({
    viewport: { width: 1366, height: 768 },
    colorScheme: options.colorScheme ?? "light",
  });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(`uncaught: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(`console: ${message.text()}`);
  });
  return { page, errors };
}

/** Saves a full-page screenshot as a test artifact; returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

afterEach(async () => {
  const leaked = [...open];
  open.clear();
  await Promise.all(leaked.map((browser) => browser.close()));
  if (leaked.length > 0) throw new Error(`test left ${leaked.length} browser(s) open`);
});
