import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, extname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The page's files: plain HTML, CSS and ES modules, served as they are (no build step). They
 * live in src/dashboard/web, found from the package root, so the same path works whether this
 * module runs from src/ (tests) or dist/ (the CLI).
 */
export const WEB_DIR = fileURLToPath(new URL("../../src/dashboard/web/", import.meta.url));

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
};

export interface Asset {
  body: Buffer;
  type: string;
}

/** Every asset by its URL path under /assets/, read once: uPlot comes from its package. */
export function loadAssets(): { page: Asset; assets: Map<string, Asset> } {
  const assets = new Map<string, Asset>();
  for (const name of readdirSync(WEB_DIR)) {
    const type = TYPES[extname(name)];
    if (!type || name === "index.html") continue;
    assets.set(name, { body: readFileSync(join(WEB_DIR, name)), type });
  }
  const uplot = dirname(createRequire(import.meta.url).resolve("uplot/dist/uPlot.iife.min.js"));
  assets.set("vendor/uplot.js", {
    body: readFileSync(join(uplot, "uPlot.iife.min.js")),
    type: TYPES[".js"] as string,
  });
  assets.set("vendor/uplot.css", {
    body: readFileSync(join(uplot, "uPlot.min.css")),
    type: TYPES[".css"] as string,
  });
  return {
    page: { body: readFileSync(join(WEB_DIR, "index.html")), type: TYPES[".html"] as string },
    assets,
  };
}
