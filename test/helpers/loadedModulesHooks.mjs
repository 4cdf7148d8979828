// Module hooks (node:module register) that write each module's URL to a file as it loads, so a
// test can see what a command pulled in. Run in the hooks thread: a file is the simplest way out.
import { appendFileSync } from "node:fs";

let file;

export function initialize(data) {
  file = data.file;
}

export async function load(url, context, next) {
  appendFileSync(file, `${url}\n`);
  return next(url, context);
}
